# terraform test (apply): what the region module renders for its nodes.

variables {
  name            = "eu-west-1"
  location        = { lat = 53.35, lon = -6.26 }
  node_count      = 2
  controller_urls = ["https://api1.example.org", "https://api2.example.org/"]
  node_token      = "nxk_0123456789abcdefghijklmnopqrstuvwxyzABCD"
  realm           = "turn.example.org"
  ports           = { turn = 3478, tls = 5349, extra_tls = 443, min_relay = 61000, max_relay = 65535 }
  tls             = { mode = "files", cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" }
  tls_key_pem     = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
  advertise_host  = { relay1 = "relay1.eu-west-1.example.org" }
  relay_options   = { user_quota = 32, denied_peer_ip = ["198.51.100.0/24"] }
  node_overrides  = { relay2 = { listening_port = 3479, metrics_listen = "127.0.0.1:9642" } }
  capacity        = 5000
  metrics_cidrs   = ["10.0.0.0/8", "fd00::/8"]
}

run "renders_every_node" {
  command = apply

  assert {
    condition     = output.node_names == ["relay1", "relay2"]
    error_message = "nodes are relay1 … relayN"
  }
  assert {
    condition     = alltrue([for n, node in output.nodes : startswith(node.user_data, "#cloud-config\n")])
    error_message = "user data is a #cloud-config document"
  }
  assert {
    condition = alltrue([for n, node in output.nodes :
      one([for f in yamldecode(node.user_data).write_files : f.content if f.path == "/etc/nexrtc/relay.toml"]) == node.relay_toml
    ])
    error_message = "the user data writes each node's relay.toml"
  }
  assert {
    condition = alltrue([for n, node in output.nodes :
      one([for f in yamldecode(node.user_data).write_files : f.content if f.path == "/etc/systemd/system/nexrtc-relay.service"]) == output.unit
    ])
    error_message = "the user data installs the packaged unit"
  }
  assert {
    condition = alltrue([for n, node in output.nodes :
      one([for f in yamldecode(node.user_data).write_files : f.permissions if f.path == "/etc/default/nexrtc-relay"]) == "0600"
    ])
    error_message = "the environment file, which holds the node token, is 0600"
  }
  assert {
    condition     = strcontains(output.nodes.relay1.relay_toml, "listening_port = 3478\n") && strcontains(output.nodes.relay2.relay_toml, "listening_port = 3479\n")
    error_message = "node overrides replace the region's keys for that node only"
  }
  assert {
    condition     = strcontains(output.nodes.relay1.relay_toml, "denied_peer_ip = [\"198.51.100.0/24\"]\n") && strcontains(output.nodes.relay1.relay_toml, "user_quota = 32\n")
    error_message = "relay_options reach relay.toml"
  }
  assert {
    condition     = strcontains(output.nodes.relay1.relay_toml, "cert = \"/etc/nexrtc/tls/relay.crt\"\n") && !strcontains(output.nodes.relay1.relay_toml, "no_tls")
    error_message = "TLS files are configured"
  }
  assert {
    condition = (output.nodes.relay1.environment.NEXRTC_CONTROLLER == "https://api1.example.org,https://api2.example.org"
      && output.nodes.relay1.environment.NEXRTC_REGION == "eu-west-1"
      && output.nodes.relay2.environment.NEXRTC_NODE == "relay2"
    && output.nodes.relay1.environment.NEXRTC_NODE_TOKEN == var.node_token)
    error_message = "the agent's environment names the controllers, region, node and token"
  }
  assert {
    condition     = output.nodes.relay1.relay_args == tolist(["--advertise", "udp:relay1.eu-west-1.example.org:3478", "--advertise", "tcp:relay1.eu-west-1.example.org:3478", "--advertise", "tls:relay1.eu-west-1.example.org:5349", "--advertise", "tls:relay1.eu-west-1.example.org:443", "--capacity", "5000"])
    error_message = "advertised addresses and capacity are relay flags"
  }
  assert {
    condition = toset([for r in output.firewall : "${r.protocol}:${r.from_port}-${r.to_port}"]) == toset([
      "udp:3478-3478", "tcp:3478-3478", "tcp:5349-5349", "tcp:443-443", "udp:61000-65535", "tcp:9641-9641"
    ])
    error_message = "the firewall opens exactly the relay's ports"
  }
  assert {
    condition     = one([for r in output.firewall : r.cidrs if r.from_port == 9641]) == tolist(["10.0.0.0/8", "fd00::/8"])
    error_message = "the metrics port is open only to metrics_cidrs"
  }
  assert {
    condition     = strcontains(output.nftables, "policy drop;") && strcontains(output.nftables, "meta nfproto ipv4 udp dport 61000-65535 accept") && strcontains(output.nftables, "ip6 saddr { fd00::/8 } tcp dport 9641 accept")
    error_message = "the host firewall drops what the list does not open"
  }
  assert {
    condition     = !strcontains(output.autoscaling_user_data, "NEXRTC_NODE=") && strcontains(output.autoscaling_user_data, "NEXRTC_REGION=eu-west-1")
    error_message = "the autoscaling user data names the node by its host"
  }
  assert {
    condition     = output.registration.path == "/v1/admin/regions/eu-west-1" && jsondecode(output.registration.body) == { lat = 53.35, lon = -6.26, score_multiplier = 1 }
    error_message = "the registration is the controller's region request"
  }
}

run "acme_opens_port_80_and_installs_certbot" {
  command = apply
  variables {
    tls = { mode = "acme", acme_domain = "relay.example.org", acme_email = "ops@example.org" }
  }
  assert {
    condition     = contains(yamldecode(output.nodes.relay1.user_data).packages, "certbot") && length([for r in output.firewall : r if r.from_port == 80 && r.protocol == "tcp"]) == 1
    error_message = "ACME gets certbot and tcp 80"
  }
}

run "no_tls_closes_the_tls_ports" {
  command = apply
  variables {
    tls = { mode = "none" }
  }
  assert {
    condition     = strcontains(output.nodes.relay1.relay_toml, "no_tls = true\n") && length([for r in output.firewall : r if r.from_port == 5349 || r.from_port == 443]) == 0
    error_message = "without TLS no TLS port is opened"
  }
}

run "refuses_tls_files_without_a_key" {
  command = plan
  variables {
    tls = { mode = "files" }
  }
  expect_failures = [var.tls]
}

run "refuses_a_relay_range_over_the_ephemeral_ports" {
  command = plan
  variables {
    ports = { min_relay = 30000 }
  }
  expect_failures = [var.ports]
}

run "refuses_a_malformed_node_token" {
  command = plan
  variables {
    node_token = "secret"
  }
  expect_failures = [var.node_token]
}

run "refuses_a_bad_region_name" {
  command = plan
  variables {
    name = "EU West"
  }
  expect_failures = [var.name]
}

run "an_aws_autoscaling_node_drains_before_its_lifecycle_action_completes" {
  command = apply
  variables {
    address_discovery  = "aws"
    aws_lifecycle_hook = { group = "nexrtc-eu-west-1", hook = "nexrtc-drain" }
  }
  assert {
    condition = alltrue([
      contains(yamldecode(output.autoscaling_user_data).packages, "awscli"),
      contains(yamldecode(output.autoscaling_user_data).runcmd, ["systemctl", "enable", "--now", "nexrtc-lifecycle-watch.timer"]),
      contains(yamldecode(output.autoscaling_user_data).runcmd, ["/usr/local/sbin/nexrtc-discover-addresses", "aws"]),
      strcontains(one([for f in yamldecode(output.autoscaling_user_data).write_files : f.content if f.path == "/etc/systemd/system/nexrtc-lifecycle-watch.service"]), "nexrtc-lifecycle-watch nexrtc-eu-west-1 nexrtc-drain"),
      strcontains(one([for f in yamldecode(output.autoscaling_user_data).write_files : f.content if f.path == "/etc/systemd/system/nexrtc-load-metric.service"]), "nexrtc-load-metric nexrtc-eu-west-1 http://127.0.0.1:9641/metrics"),
      contains(yamldecode(output.autoscaling_user_data).runcmd, ["systemctl", "enable", "--now", "nexrtc-load-metric.timer"]),
    ])
    error_message = "the autoscaling user data watches the lifecycle hook and discovers its addresses"
  }
}
