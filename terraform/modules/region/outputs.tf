output "node_names" {
  description = "The rendered nodes, relay1 … relayN."
  value       = local.node_names
}

output "nodes" {
  description = "Per node name: user_data (#cloud-config), relay_toml (/etc/nexrtc/relay.toml), environment (of nexrtc-relay.service, holding the node token) and relay_args (flags without an environment variable, also in environment.NEXRTC_RELAY_ARGS)."
  sensitive   = true
  value = {
    for n in local.node_names : n => {
      user_data   = local.cloud_init[n]
      relay_toml  = local.toml_text[n]
      environment = local.environment[n]
      relay_args  = local.relay_args[n]
    }
  }
}

output "autoscaling_user_data" {
  description = "One #cloud-config for every instance of an autoscaling group: the node is named by its host name and finds its addresses at boot (address_discovery)."
  sensitive   = true
  value       = local.cloud_init[""]
}

output "firewall" {
  description = "Exactly the ports the relay serves, as ingress rules {protocol, from_port, to_port, cidrs, description}; the nodes' nftables ruleset is rendered from the same list."
  value       = local.firewall
}

output "nftables" {
  description = "The nodes' host firewall (nft -f), written by the user data."
  value       = module.host.nftables
}

output "registration" {
  description = "The region's registration in the controller: an admin API request {method, path, body}."
  value       = local.registration
}

output "unit" {
  description = "The systemd unit the user data installs (packaging/systemd/nexrtc-relay.service)."
  value       = local.unit
}
