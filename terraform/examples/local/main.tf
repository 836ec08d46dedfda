# The operator loop on one machine: the region module's nodes as `nexrtc relay`
# processes on loopback addresses. `terraform apply -var node_count=3` adds nodes,
# a smaller count drains and removes the last ones, `terraform destroy` drains
# them all and removes the region from the controller.

terraform {
  required_version = ">= 1.6"
}

locals {
  names = [for i in range(var.node_count) : "relay${i + 1}"]
  ip    = { for i, n in local.names : n => "127.0.${var.subnet}.${i + 1}" }
}

module "region" {
  source          = "../../modules/region"
  name            = var.region
  location        = var.location
  node_count      = var.node_count
  controller_urls = [var.controller_url]
  node_token      = var.node_token
  realm           = "${var.region}.local"
  tls             = { mode = "none" }
  drain_grace     = var.drain_grace
  ports           = { turn = var.turn_port, metrics = var.metrics_port, min_relay = var.relay_ports.min, max_relay = var.relay_ports.max }
  # Nodes share this host: each listens and relays on its own loopback address.
  # Loopback peers are allowed so that a test peer on this host can be reached.
  relay_options = { allow_loopback_peers = true, relay_threads = 1 }
  node_overrides = {
    for n in local.names : n => {
      listening_ip   = [local.ip[n]]
      relay_ip       = [local.ip[n]]
      metrics_listen = "${local.ip[n]}:${var.metrics_port}"
    }
  }
}

# The region, registered in the controller before its nodes and removed after them.
module "registration" {
  source         = "../../modules/registration"
  nexrtc         = var.nexrtc
  controller_url = var.controller_url
  admin_key      = var.admin_key
  registration   = module.region.registration
  drain_wait     = var.drain_grace + 15
}

resource "terraform_data" "node" {
  for_each   = toset(local.names)
  depends_on = [module.registration]

  # A changed configuration replaces the node: the old process drains, a new one starts.
  triggers_replace = sha256(join("\n", [module.region.nodes[each.key].relay_toml, jsonencode(module.region.nodes[each.key].environment)]))

  input = {
    script  = abspath("${path.module}/node.sh")
    dir     = "${var.work_dir}/${var.region}/${each.key}"
    nexrtc  = var.nexrtc
    ready   = "http://${local.ip[each.key]}:${var.metrics_port}/readyz"
    timeout = var.drain_grace + 15
  }

  provisioner "local-exec" {
    command = "${self.input.script} start"
    environment = {
      NODE_DIR   = self.input.dir
      NEXRTC     = self.input.nexrtc
      READY_URL  = self.input.ready
      RELAY_TOML = module.region.nodes[each.key].relay_toml
      NODE_ENV   = join("\n", [for k, v in module.region.nodes[each.key].environment : "${k}='${v}'"])
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "${self.input.script} stop"
    environment = {
      NODE_DIR = self.input.dir
      TIMEOUT  = self.input.timeout
    }
  }
}
