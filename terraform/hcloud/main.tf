# Relay regions on Hetzner Cloud: per region min_nodes servers in a spread placement
# group (separate hosts), public IPv4 and IPv6, a firewall that opens exactly the region
# module's rules, and each server's user data from the region module, unchanged.

module "region" {
  source   = "../modules/region"
  for_each = var.regions

  name              = each.key
  location          = { lat = each.value.lat, lon = each.value.lon, score_multiplier = each.value.score_multiplier }
  node_count        = each.value.min_nodes
  capacity          = each.value.capacity
  controller_urls   = var.controller_urls
  node_token        = var.node_token
  realm             = var.realm
  tls               = var.tls
  tls_key_pem       = var.tls_key_pem
  install           = var.install
  drain_grace       = var.drain_grace
  relay_options     = each.value.relay_options
  address_discovery = "hcloud"
  ssh_cidrs         = var.ssh_cidrs
  metrics_cidrs     = var.metrics_cidrs
}

module "registration" {
  source   = "../modules/registration"
  for_each = var.regions

  controller_url = var.controller_urls[0]
  admin_key      = var.admin_key
  registration   = module.region[each.key].registration
  drain_wait     = var.drain_grace + 60
}

locals {
  servers = merge([
    for r, region in var.regions : {
      for n in module.region[r].node_names : "${r}/${n}" => { region = r, node = n }
    }
  ]...)
}

resource "hcloud_placement_group" "relay" {
  for_each = var.regions
  name     = "${var.name_prefix}-${each.key}"
  type     = "spread"
}

resource "hcloud_firewall" "relay" {
  for_each = var.regions
  name     = "${var.name_prefix}-${each.key}-relay"

  dynamic "rule" {
    for_each = module.region[each.key].firewall
    content {
      description = rule.value.description
      direction   = "in"
      protocol    = rule.value.protocol
      port        = rule.value.from_port == rule.value.to_port ? tostring(rule.value.from_port) : "${rule.value.from_port}-${rule.value.to_port}"
      source_ips  = rule.value.cidrs
    }
  }
}

resource "hcloud_server" "relay" {
  for_each = local.servers

  # The node name is the host name; the relay registers under it.
  name               = "${each.value.node}-${each.value.region}"
  image              = "debian-12"
  server_type        = var.regions[each.value.region].server_type
  location           = var.regions[each.value.region].location
  placement_group_id = hcloud_placement_group.relay[each.value.region].id
  firewall_ids       = [hcloud_firewall.relay[each.value.region].id]
  ssh_keys           = var.ssh_keys
  user_data          = module.region[each.value.region].nodes[each.value.node].user_data

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  # Removing a server shuts it down first: systemd stops nexrtc-relay, which drains
  # (TimeoutStopSec = drain_grace + 30) before the server is deleted.
  shutdown_before_deletion = true

  labels = {
    "nexrtc-region" = each.value.region
  }
}
