terraform {
  required_version = ">= 1.6"
}

locals {
  node_names = [for i in range(var.node_count) : "relay${i + 1}"]
  tls_on     = var.tls.mode != "none"
  tls_dir    = "/etc/nexrtc/tls"

  # /etc/nexrtc/relay.toml: the region's keys, then the operator's relay_options,
  # then each node's overrides. Values are written with jsonencode, whose strings,
  # numbers, booleans and arrays are TOML too.
  region_toml = merge(
    {
      realm                    = var.realm
      listening_port           = var.ports.turn
      tls_listening_port       = var.ports.tls
      extra_tls_listening_port = local.tls_on ? var.ports.extra_tls : 0
      min_port                 = var.ports.min_relay
      max_port                 = var.ports.max_relay
      drain_grace              = var.drain_grace
      relay_threads            = var.relay_threads
    },
    {
      cert   = local.tls_on ? "${local.tls_dir}/relay.crt" : null
      pkey   = local.tls_on ? "${local.tls_dir}/relay.key" : null
      no_tls = local.tls_on ? null : true
    },
    var.relay_options,
  )
  # "" is the autoscaling template: the region's keys without a node's overrides.
  node_toml = { for n in concat(local.node_names, [""]) : n => merge(local.region_toml, try(var.node_overrides[n], {})) }
  toml_text = {
    for n, kv in local.node_toml : n => join("", [
      "# /etc/nexrtc/relay.toml of ${var.name}/${n == "" ? "(node named by its host)" : n}, rendered by terraform/modules/region.\n",
      "# Every key: docs/config-reference.md. Check a change: nexrtc relay --config FILE --check-config\n",
      join("", [for k in sort(keys(kv)) : "${k} = ${jsonencode(kv[k])}\n" if kv[k] != null]),
    ])
  }

  # The in-process edge agent: environment of nexrtc-relay.service. Flags without an
  # environment variable go through NEXRTC_RELAY_ARGS, which the unit expands.
  relay_args = {
    for n in concat(local.node_names, [""]) : n => concat(
      n != "" && contains(keys(var.advertise_host), n) ? concat(
        ["--advertise", "udp:${var.advertise_host[n]}:${var.ports.turn}", "--advertise", "tcp:${var.advertise_host[n]}:${var.ports.turn}"],
        local.tls_on ? ["--advertise", "tls:${var.advertise_host[n]}:${var.ports.tls}"] : [],
        local.tls_on && var.ports.extra_tls > 0 ? ["--advertise", "tls:${var.advertise_host[n]}:${var.ports.extra_tls}"] : [],
      ) : [],
      var.capacity > 0 ? ["--capacity", tostring(var.capacity)] : [],
      var.controller_ca_pem != null ? ["--controller-ca-file", "/etc/nexrtc/controller-ca.pem"] : [],
    )
  }
  environment = {
    # "" is the autoscaling template: the node name is the instance's host name.
    for n in concat(local.node_names, [""]) : n => merge(
      {
        NEXRTC_CONTROLLER = join(",", [for u in var.controller_urls : trimsuffix(u, "/")])
        NEXRTC_NODE_TOKEN = var.node_token
        NEXRTC_REGION     = var.name
        NEXRTC_RELAY_ARGS = join(" ", local.relay_args[n])
      },
      n != "" ? { NEXRTC_NODE = n } : {},
    )
  }
  env_file = {
    for n, env in local.environment : n => join("", concat(
      ["# Environment of nexrtc-relay.service, rendered by terraform/modules/region (mode 0600).\n"],
      [for k in sort(keys(env)) : "${k}=${env[k]}\n"],
    ))
  }

  # Firewall: exactly the relay's ports. The cloud wrappers build their security
  # groups from this list and the nodes' nftables ruleset is rendered from it.
  anywhere = ["0.0.0.0/0", "::/0"]
  firewall = concat(
    [
      { protocol = "udp", from_port = var.ports.turn, to_port = var.ports.turn, cidrs = local.anywhere, description = "TURN over UDP" },
      { protocol = "tcp", from_port = var.ports.turn, to_port = var.ports.turn, cidrs = local.anywhere, description = "TURN over TCP" },
    ],
    local.tls_on ? [{ protocol = "tcp", from_port = var.ports.tls, to_port = var.ports.tls, cidrs = local.anywhere, description = "TURN over TLS" }] : [],
    local.tls_on && var.ports.extra_tls > 0 ? [{ protocol = "tcp", from_port = var.ports.extra_tls, to_port = var.ports.extra_tls, cidrs = local.anywhere, description = "TURN over TLS, second port" }] : [],
    [{ protocol = "udp", from_port = var.ports.min_relay, to_port = var.ports.max_relay, cidrs = local.anywhere, description = "relayed transport addresses (peers)" }],
    var.tls.mode == "acme" ? [{ protocol = "tcp", from_port = 80, to_port = 80, cidrs = local.anywhere, description = "ACME http-01 (certbot standalone)" }] : [],
    length(var.metrics_cidrs) > 0 ? [{ protocol = "tcp", from_port = var.ports.metrics, to_port = var.ports.metrics, cidrs = var.metrics_cidrs, description = "Prometheus scrape of the relay" }] : [],
    length(var.ssh_cidrs) > 0 ? [{ protocol = "tcp", from_port = 22, to_port = 22, cidrs = var.ssh_cidrs, description = "SSH" }] : [],
  )
  nft_rules = flatten([
    for r in local.firewall : [
      for family in ["ip", "ip6"] : (
        contains(r.cidrs, family == "ip" ? "0.0.0.0/0" : "::/0")
        ? "    meta nfproto ${family == "ip" ? "ipv4" : "ipv6"} ${r.protocol} dport ${r.from_port == r.to_port ? r.from_port : "${r.from_port}-${r.to_port}"} accept comment \"${r.description}\""
        : length([for c in r.cidrs : c if strcontains(c, ":") == (family == "ip6")]) == 0 ? ""
        : "    ${family} saddr { ${join(", ", [for c in r.cidrs : c if strcontains(c, ":") == (family == "ip6")])} } ${r.protocol} dport ${r.from_port == r.to_port ? r.from_port : "${r.from_port}-${r.to_port}"} accept comment \"${r.description}\""
      )
    ]
  ])
  sysctl = join("\n", [
    "# Relay node kernel settings, rendered by terraform/modules/region.",
    "# Socket buffers for bursts of relayed datagrams.",
    "net.core.rmem_max = 26214400",
    "net.core.wmem_max = 26214400",
    "net.core.rmem_default = 1048576",
    "net.core.wmem_default = 1048576",
    "net.core.netdev_max_backlog = 16384",
    "# Outgoing connections take ephemeral ports below the relay's range (${var.ports.min_relay}-${var.ports.max_relay}).",
    "net.ipv4.ip_local_port_range = 32768 ${min(60999, var.ports.min_relay - 1)}",
    "",
  ])

  unit          = file("${path.module}/files/nexrtc-relay.service")
  unit_drain    = "# Rendered by terraform/modules/region: the stop timeout outlasts the drain grace.\n[Service]\nTimeoutStopSec=${var.drain_grace + 30}\n"
  discover      = file("${path.module}/files/discover-addresses.sh")
  lifecycle_dir = "/etc/systemd/system/nexrtc-relay.service.d"

  acme_cmds = var.tls.mode != "acme" ? [] : [
    ["certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos", "-m", var.tls.acme_email, "-d", var.tls.acme_domain,
    "--deploy-hook", "/usr/local/sbin/nexrtc-install-certificate"],
  ]

  cloud_init = {
    for n in concat(local.node_names, [""]) : n => "#cloud-config\n${yamlencode({
      package_update = true
      packages       = concat(["curl", "nftables"], var.tls.mode == "acme" ? ["certbot"] : [], var.aws_lifecycle_hook != null ? ["awscli"] : [])
      write_files = concat(
        [
          { path = "/etc/nexrtc/relay.toml", permissions = "0640", content = local.toml_text[n] },
          { path = "/etc/default/nexrtc-relay", permissions = "0600", content = local.env_file[n] },
          { path = "/etc/systemd/system/nexrtc-relay.service", permissions = "0644", content = local.unit },
          { path = "${local.lifecycle_dir}/drain.conf", permissions = "0644", content = local.unit_drain },
          { path = "/usr/lib/sysusers.d/nexrtc.conf", permissions = "0644", content = module.host.sysusers },
          { path = "/etc/sysctl.d/60-nexrtc-relay.conf", permissions = "0644", content = local.sysctl },
          { path = "/etc/nftables.d/nexrtc-relay.nft", permissions = "0644", content = module.host.nftables },
          { path = "/usr/local/sbin/nexrtc-discover-addresses", permissions = "0755", content = local.discover },
        ],
        var.controller_ca_pem != null ? [{ path = "/etc/nexrtc/controller-ca.pem", permissions = "0644", content = var.controller_ca_pem }] : [],
        var.aws_lifecycle_hook != null ? [
          { path = "/usr/local/sbin/nexrtc-lifecycle-watch", permissions = "0755", content = file("${path.module}/files/lifecycle-watch.sh") },
          {
            path        = "/etc/systemd/system/nexrtc-lifecycle-watch.service"
            permissions = "0644"
            content     = "[Unit]\nDescription=Drain the relay when the autoscaling group terminates this instance\nAfter=nexrtc-relay.service\n\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/nexrtc-lifecycle-watch ${var.aws_lifecycle_hook.group} ${var.aws_lifecycle_hook.hook}\n"
          },
          { path = "/usr/local/sbin/nexrtc-load-metric", permissions = "0755", content = file("${path.module}/files/load-metric.sh") },
          {
            path        = "/etc/systemd/system/nexrtc-load-metric.service"
            permissions = "0644"
            content     = "[Unit]\nDescription=Publish the relay's active allocations to CloudWatch (autoscaling)\nAfter=nexrtc-relay.service\n\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/nexrtc-load-metric ${var.aws_lifecycle_hook.group} http://127.0.0.1:${var.ports.metrics}/metrics\n"
          },
          {
            path        = "/etc/systemd/system/nexrtc-load-metric.timer"
            permissions = "0644"
            content     = "[Unit]\nDescription=Publish the relay's load every minute\n\n[Timer]\nOnBootSec=60\nOnUnitActiveSec=60\n\n[Install]\nWantedBy=timers.target\n"
          },
          {
            path        = "/etc/systemd/system/nexrtc-lifecycle-watch.timer"
            permissions = "0644"
            content     = "[Unit]\nDescription=Watch this instance's autoscaling lifecycle state\n\n[Timer]\nOnBootSec=60\nOnUnitActiveSec=10\nAccuracySec=1\n\n[Install]\nWantedBy=timers.target\n"
          },
        ] : [],
        var.tls.mode == "files" ? [
          { path = "${local.tls_dir}/relay.crt", permissions = "0640", content = var.tls.cert_pem },
          { path = "${local.tls_dir}/relay.key", permissions = "0640", content = var.tls_key_pem },
        ] : [],
        var.tls.mode == "acme" ? [{
          path        = "/usr/local/sbin/nexrtc-install-certificate"
          permissions = "0755"
          content     = "#!/bin/sh\n# certbot deploy hook: the renewed certificate, readable by the relay, then a reload (SIGHUP).\nset -eu\nlive=/etc/letsencrypt/live/${var.tls.acme_domain}\ninstall -D -m 0640 -g nexrtc \"$live/fullchain.pem\" ${local.tls_dir}/relay.crt\ninstall -D -m 0640 -g nexrtc \"$live/privkey.pem\" ${local.tls_dir}/relay.key\nsystemctl reload nexrtc-relay 2>/dev/null || true\n"
        }] : [],
      )
      runcmd = concat(
        module.host.install_commands,
        [
          ["sh", "-c", "chgrp nexrtc /etc/nexrtc/relay.toml && chgrp -R nexrtc ${local.tls_dir} 2>/dev/null; true"],
          ["sysctl", "--system"],
          ["nft", "-f", "/etc/nftables.d/nexrtc-relay.nft"],
          ["sh", "-c", "grep -q nexrtc-relay.nft /etc/nftables.conf 2>/dev/null || echo 'include \"/etc/nftables.d/nexrtc-relay.nft\"' >> /etc/nftables.conf; systemctl enable nftables"],
          ["/usr/local/sbin/nexrtc-discover-addresses", var.address_discovery],
        ],
        local.acme_cmds,
        [
          ["systemctl", "daemon-reload"],
          ["systemctl", "enable", "--now", "nexrtc-relay.service"],
        ],
        var.aws_lifecycle_hook != null ? [
          ["systemctl", "enable", "--now", "nexrtc-lifecycle-watch.timer"],
          ["systemctl", "enable", "--now", "nexrtc-load-metric.timer"],
        ] : [],
      )
    })}"
  }
  registration = {
    method = "PUT"
    path   = "/v1/admin/regions/${var.name}"
    body   = jsonencode({ lat = var.location.lat, lon = var.location.lon, score_multiplier = var.location.score_multiplier })
  }
}

check "tls_files_have_a_key" {
  assert {
    condition     = var.tls.mode != "files" || var.tls_key_pem != null
    error_message = "tls.mode \"files\" needs tls_key_pem."
  }
}

module "host" {
  source           = "../host"
  install          = var.install
  firewall_rules   = local.nft_rules
  firewall_comment = "Host firewall of a relay node, rendered by terraform/modules/region: only the relay's ports."
}
