terraform {
  required_version = ">= 1.6"
}

# The controllers' API keys (and the first tenant's secret): made at the first apply
# from Terraform's random UUIDs (crypto/rand, 2 × 122 bits each) and never changed by
# a later apply; they live in the state, which must be kept as a secret.
resource "terraform_data" "keys" {
  input = {
    admin_key     = "nxk_${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
    node_key      = "nxk_${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
    ice_key       = "nxk_${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
    tenant_secret = "${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
  }
  lifecycle {
    ignore_changes = [input]
  }
}

locals {
  keys = terraform_data.keys.output
  tls  = "${var.config_dir}/tls"

  client_urls     = [for n in sort(keys(var.etcd_members)) : "https://${var.etcd_members[n]}:2379"]
  initial_cluster = join(",", [for n in sort(keys(var.etcd_members)) : "${n}=https://${var.etcd_members[n]}:2380"])
  cluster_token   = "nexrtc-${substr(sha256(local.initial_cluster), 0, 16)}"

  # etcd reads ETCD_* from its environment; Debian's unit gets this file through a drop-in
  # (so the package's own /etc/default/etcd is left alone).
  etcd_env = {
    for n, ip in var.etcd_members : n => join("", [for k, v in {
      ETCD_NAME                        = n
      ETCD_DATA_DIR                    = "${var.etcd_data_dir}/${n}"
      ETCD_LISTEN_PEER_URLS            = "https://${ip}:2380"
      ETCD_INITIAL_ADVERTISE_PEER_URLS = "https://${ip}:2380"
      ETCD_LISTEN_CLIENT_URLS          = "https://${ip}:2379"
      ETCD_ADVERTISE_CLIENT_URLS       = "https://${ip}:2379"
      ETCD_LISTEN_METRICS_URLS         = "http://${ip}:2381"
      ETCD_INITIAL_CLUSTER             = local.initial_cluster
      ETCD_INITIAL_CLUSTER_STATE       = "new"
      ETCD_INITIAL_CLUSTER_TOKEN       = local.cluster_token
      ETCD_CERT_FILE                   = "${var.etcd_dir}/${n}.crt"
      ETCD_KEY_FILE                    = "${var.etcd_dir}/${n}.key"
      ETCD_TRUSTED_CA_FILE             = "${var.etcd_dir}/ca.crt"
      ETCD_CLIENT_CERT_AUTH            = "true"
      ETCD_PEER_CERT_FILE              = "${var.etcd_dir}/${n}.crt"
      ETCD_PEER_KEY_FILE               = "${var.etcd_dir}/${n}.key"
      ETCD_PEER_TRUSTED_CA_FILE        = "${var.etcd_dir}/ca.crt"
      ETCD_PEER_CLIENT_CERT_AUTH       = "true"
    } : "${k}=${v}\n"])
  }

  controller_ips = [for c in values(var.controllers) : c.ip]
  member_ips     = values(var.etcd_members)
  ssh_rule       = length(var.ssh_cidrs) > 0 ? ["    ip saddr { ${join(", ", var.ssh_cidrs)} } tcp dport 22 accept comment \"SSH\""] : []
  etcd_rules = concat(local.ssh_rule, [
    "    ip saddr { ${join(", ", concat(local.controller_ips, local.member_ips))} } tcp dport 2379 accept comment \"etcd clients: controllers and members\"",
    "    ip saddr { ${join(", ", local.member_ips)} } tcp dport 2380 accept comment \"etcd peers\"",
  ])
  controller_rules = concat(local.ssh_rule, [
    "    tcp dport ${var.api_port} accept comment \"controller API\"",
  ])

  controller_toml = {
    for n, c in var.controllers : n => join("", concat(
      ["# /etc/nexrtc/controller.toml of ${n}, rendered by terraform/modules/control-plane.\n",
      "# Every key: docs/config-reference.md. Check a change: nexrtc controller --config FILE --check-config\n"],
      [for k, v in merge({
        listen         = "0.0.0.0:${var.api_port}"
        tls_cert       = "${local.tls}/api.crt"
        tls_key        = "${local.tls}/api.key"
        etcd_endpoints = local.client_urls
        etcd_ca        = "${local.tls}/ca.crt"
        etcd_cert      = "${local.tls}/etcd-client.crt"
        etcd_key       = "${local.tls}/etcd-client.key"
        advertise_url  = trimsuffix(c.url, "/")
      }, var.controller_options) : "${k} = ${jsonencode(v)}\n" if v != null],
      ["\n[bootstrap]\n"],
      [for k, v in {
        admin_key     = local.keys.admin_key
        node_key      = local.keys.node_key
        ice_key       = local.keys.ice_key
        tenant        = var.tenant
        tenant_secret = var.tenant != null ? local.keys.tenant_secret : null
      } : "${k} = ${jsonencode(v)}\n" if v != null],
    ))
  }

  etcd_user_data = {
    for n, ip in var.etcd_members : n => "#cloud-config\n${yamlencode({
      package_update = true
      packages       = ["etcd-server", "nftables"]
      write_files = [
        { path = "/etc/etcd/nexrtc.env", permissions = "0644", content = local.etcd_env[n] },
        { path = "/etc/systemd/system/etcd.service.d/nexrtc.conf", permissions = "0644", content = "# Rendered by terraform/modules/control-plane.\n[Service]\nEnvironmentFile=/etc/etcd/nexrtc.env\n" },
        { path = "${var.etcd_dir}/ca.crt", permissions = "0644", content = var.tls.ca_pem },
        { path = "${var.etcd_dir}/${n}.crt", permissions = "0644", content = var.tls.etcd_member_pem[n] },
        { path = "${var.etcd_dir}/${n}.key", permissions = "0600", content = var.tls_keys.etcd_member[n] },
        { path = "/etc/nftables.d/nexrtc-etcd.nft", permissions = "0644", content = module.etcd_host.nftables },
      ]
      runcmd = [
        ["sh", "-c", "chown -R etcd:etcd ${var.etcd_dir} && install -d -o etcd -g etcd -m 0700 ${var.etcd_data_dir} ${var.etcd_data_dir}/${n}"],
        ["nft", "-f", "/etc/nftables.d/nexrtc-etcd.nft"],
        ["sh", "-c", "grep -q nexrtc-etcd.nft /etc/nftables.conf 2>/dev/null || echo 'include \"/etc/nftables.d/nexrtc-etcd.nft\"' >> /etc/nftables.conf; systemctl enable nftables"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "etcd"],
        ["systemctl", "restart", "etcd"],
      ]
    })}"
  }

  controller_user_data = {
    for n, c in var.controllers : n => "#cloud-config\n${yamlencode({
      package_update = true
      packages       = ["curl", "nftables"]
      write_files = [
        { path = "${var.config_dir}/controller.toml", permissions = "0640", content = local.controller_toml[n] },
        { path = "${local.tls}/ca.crt", permissions = "0644", content = var.tls.ca_pem },
        { path = "${local.tls}/etcd-client.crt", permissions = "0644", content = var.tls.etcd_client_pem },
        { path = "${local.tls}/etcd-client.key", permissions = "0640", content = var.tls_keys.etcd_client },
        { path = "${local.tls}/api.crt", permissions = "0644", content = var.tls.controller_api_pem[n] },
        { path = "${local.tls}/api.key", permissions = "0640", content = var.tls_keys.controller_api[n] },
        { path = "/etc/systemd/system/nexrtc-controller.service", permissions = "0644", content = file("${path.module}/files/nexrtc-controller.service") },
        { path = "/usr/lib/sysusers.d/nexrtc.conf", permissions = "0644", content = module.controller_host.sysusers },
        { path = "/etc/nftables.d/nexrtc-controller.nft", permissions = "0644", content = module.controller_host.nftables },
      ]
      runcmd = concat(module.controller_host.install_commands, [
        ["sh", "-c", "chgrp -R nexrtc ${var.config_dir}"],
        ["nft", "-f", "/etc/nftables.d/nexrtc-controller.nft"],
        ["sh", "-c", "grep -q nexrtc-controller.nft /etc/nftables.conf 2>/dev/null || echo 'include \"/etc/nftables.d/nexrtc-controller.nft\"' >> /etc/nftables.conf; systemctl enable nftables"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "nexrtc-controller.service"],
      ])
    })}"
  }
}

check "certificates_for_every_machine" {
  assert {
    condition     = toset(keys(var.tls.etcd_member_pem)) == toset(keys(var.etcd_members)) && toset(keys(var.tls.controller_api_pem)) == toset(keys(var.controllers))
    error_message = "tls: one etcd_member_pem per etcd member and one controller_api_pem per controller."
  }
}

module "etcd_host" {
  source           = "../host"
  firewall_rules   = local.etcd_rules
  firewall_comment = "Host firewall of an etcd member, rendered by terraform/modules/control-plane."
}

module "controller_host" {
  source           = "../host"
  install          = var.install
  firewall_rules   = local.controller_rules
  firewall_comment = "Host firewall of a controller, rendered by terraform/modules/control-plane."
}
