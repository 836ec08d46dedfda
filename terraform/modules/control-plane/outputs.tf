output "etcd_user_data" {
  description = "Per etcd member: #cloud-config (Debian's etcd-server with TLS for clients and peers, client certificates required, the cluster's members, nftables: 2379 from the control plane, 2380 from members)."
  sensitive   = true
  value       = local.etcd_user_data
}

output "etcd_environment" {
  description = "Per etcd member: the ETCD_* settings its user data installs."
  value       = local.etcd_env
}

output "controller_user_data" {
  description = "Per controller: #cloud-config (nexrtc, controller.toml with the cluster's https:// endpoints and the keys, the TLS files, the packaged unit, nftables: only the API port)."
  sensitive   = true
  value       = local.controller_user_data
}

output "controller_toml" {
  description = "Per controller: its controller.toml (holds the API keys)."
  sensitive   = true
  value       = local.controller_toml
}

output "controller_urls" {
  description = "The controllers' URLs, for the relay regions' controller_urls."
  value       = tolist([for n in sort(keys(var.controllers)) : trimsuffix(var.controllers[n].url, "/")])
}

output "keys" {
  description = "The API keys made at the first apply: admin_key (operators), node_key (relays' node_token), ice_key (app servers)."
  sensitive   = true
  value = {
    admin_key = local.keys.admin_key
    node_key  = local.keys.node_key
    ice_key   = local.keys.ice_key
  }
}
