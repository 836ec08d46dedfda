output "servers" {
  description = "region/node => public IPv4 and IPv6."
  value       = { for k, s in hcloud_server.relay : k => { ipv4 = s.ipv4_address, ipv6 = s.ipv6_address } }
}

output "firewall" {
  description = "Region => the ports its firewall opens."
  value       = { for r, m in module.region : r => m.firewall }
}
