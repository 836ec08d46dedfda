output "nodes" {
  description = "Per node: its TURN address and its directory (relay.toml, relay.log, pid)."
  value = {
    for n in local.names : n => {
      turn = "${local.ip[n]}:${var.turn_port}"
      dir  = "${var.work_dir}/${var.region}/${n}"
    }
  }
}

output "firewall" {
  description = "The ports a cloud deployment of this region would open."
  value       = module.region.firewall
}
