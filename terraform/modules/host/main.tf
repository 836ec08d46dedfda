# What every NexRTC machine's cloud-init shares: installing nexrtc (a .deb or a static
# binary, checked by SHA-256), the nexrtc system user, and a host firewall that drops
# what its rules do not open. Used by the region and control-plane modules.

terraform {
  required_version = ">= 1.6"
}

variable "install" {
  description = "How the machine gets nexrtc: a .deb (deb_url) or a static binary (binary_url), checked against sha256; null: already on the image (or not needed)."
  type = object({
    deb_url    = optional(string)
    binary_url = optional(string)
    sha256     = string
  })
  default = null
  validation {
    condition     = var.install == null || (try(var.install.deb_url, null) != null) != (try(var.install.binary_url, null) != null)
    error_message = "install: one of deb_url or binary_url."
  }
  validation {
    condition     = var.install == null || can(regex("^[0-9a-f]{64}$", try(var.install.sha256, "")))
    error_message = "install.sha256: 64 hex digits."
  }
}

variable "firewall_rules" {
  description = "nftables rules of the input chain (lines), after the common ones (established, loopback, ICMP, DHCP)."
  type        = list(string)
}

variable "firewall_comment" {
  description = "What the ruleset is for, in its header comment."
  type        = string
}

locals {
  install_commands = var.install == null ? [] : var.install.deb_url != null ? [
    ["curl", "-fsSL", "--retry", "5", "-o", "/tmp/nexrtc.deb", var.install.deb_url],
    ["sh", "-c", "echo '${var.install.sha256}  /tmp/nexrtc.deb' | sha256sum -c -"],
    ["sh", "-c", "DEBIAN_FRONTEND=noninteractive apt-get install -y -o Dpkg::Options::=--force-confold /tmp/nexrtc.deb"],
    ] : [
    ["curl", "-fsSL", "--retry", "5", "-o", "/usr/bin/nexrtc.new", var.install.binary_url],
    ["sh", "-c", "echo '${var.install.sha256}  /usr/bin/nexrtc.new' | sha256sum -c - && chmod 0755 /usr/bin/nexrtc.new && mv /usr/bin/nexrtc.new /usr/bin/nexrtc"],
    ["systemd-sysusers"],
  ]

  nftables = join("\n", concat(
    [
      "#!/usr/sbin/nft -f",
      "# ${var.firewall_comment}",
      "table inet nexrtc",
      "delete table inet nexrtc",
      "table inet nexrtc {",
      "  chain input {",
      "    type filter hook input priority filter; policy drop;",
      "    ct state established,related accept",
      "    ct state invalid drop",
      "    iif \"lo\" accept",
      "    meta l4proto { icmp, ipv6-icmp } accept",
      "    udp dport { 68, 546 } accept comment \"DHCP and DHCPv6 client\"",
    ],
    [for l in var.firewall_rules : l if l != ""],
    ["  }", "}", ""],
  ))
}

output "install_commands" {
  description = "cloud-init runcmd entries that install nexrtc (none without install)."
  value       = local.install_commands
}

output "nftables" {
  description = "The host firewall (nft -f)."
  value       = local.nftables
}

output "sysusers" {
  description = "The nexrtc system user (sysusers.d), as the Debian package installs it."
  value       = file("${path.module}/files/nexrtc.conf")
}
