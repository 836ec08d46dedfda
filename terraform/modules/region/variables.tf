# Inputs of one relay region. Cloud-agnostic: the outputs are cloud-init user data
# and plain values (TOML, environment, firewall rules, the controller registration)
# that a cloud wrapper passes to its instances unchanged.

variable "name" {
  description = "Region name, as clients and the controller see it (e.g. eu-west-1)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.name))
    error_message = "name: 1-63 of a-z 0-9 - _, starting with a letter or digit."
  }
}

variable "location" {
  description = "The region site's coordinates (degrees), used by the controller's ranking; score_multiplier above 1 makes the region look farther."
  type = object({
    lat              = number
    lon              = number
    score_multiplier = optional(number, 1.0)
  })
  validation {
    condition     = abs(var.location.lat) <= 90 && abs(var.location.lon) <= 180
    error_message = "location: lat must be within [-90, 90] and lon within [-180, 180]."
  }
  validation {
    condition     = var.location.score_multiplier > 0
    error_message = "location.score_multiplier must be above 0."
  }
}

variable "node_count" {
  description = "Nodes rendered with their own user data (relay1 … relayN). Autoscaling groups use autoscaling_user_data instead."
  type        = number
  default     = 1
  validation {
    condition     = var.node_count >= 0 && var.node_count <= 1000 && floor(var.node_count) == var.node_count
    error_message = "node_count: a whole number from 0 to 1000."
  }
}

variable "capacity" {
  description = "Allocations one node should carry, reported to the controller for load-aware ranking (0: no limit reported)."
  type        = number
  default     = 0
}

variable "relay_threads" {
  description = "Relay worker threads per node (null: one per CPU core of the instance)."
  type        = number
  default     = null
}

variable "controller_urls" {
  description = "Controller base URLs (replicas), e.g. [\"https://api.example.org\"]."
  type        = list(string)
  validation {
    condition     = length(var.controller_urls) > 0 && alltrue([for u in var.controller_urls : can(regex("^https?://[^/\\s]+/?$", u))])
    error_message = "controller_urls: at least one http(s)://host[:port] URL, without a path."
  }
}

variable "controller_ca_pem" {
  description = "PEM CA certificate to trust for the controllers besides the system's (null: the system's only)."
  type        = string
  default     = null
}

variable "node_token" {
  description = "The controller's node key (nxk_…), with which relays register."
  type        = string
  sensitive   = true
  validation {
    condition     = can(regex("^nxk_[A-Za-z0-9_-]{32,}$", var.node_token))
    error_message = "node_token: the controller's node key, nxk_ followed by at least 32 characters."
  }
}

variable "realm" {
  description = "TURN realm of the relays."
  type        = string
}

variable "tls" {
  description = "TURN over TLS: mode \"none\", \"files\" (cert_pem here and the key in tls_key_pem, the same on every node) or \"acme\" (certbot standalone for acme_domain, renewed with a reload of the relay)."
  type = object({
    mode        = string
    cert_pem    = optional(string)
    acme_domain = optional(string)
    acme_email  = optional(string)
  })
  default = { mode = "none" }
  validation {
    condition     = contains(["none", "files", "acme"], var.tls.mode)
    error_message = "tls.mode: one of none, files, acme."
  }
  validation {
    condition     = var.tls.mode != "files" || var.tls.cert_pem != null
    error_message = "tls: mode \"files\" needs cert_pem (and tls_key_pem)."
  }
  validation {
    condition     = var.tls.mode != "acme" || (var.tls.acme_domain != null && var.tls.acme_email != null)
    error_message = "tls: mode \"acme\" needs acme_domain and acme_email."
  }
}

variable "tls_key_pem" {
  description = "The private key of tls.cert_pem, PEM (tls.mode \"files\")."
  type        = string
  default     = null
  sensitive   = true
}

variable "ports" {
  description = "The relay's ports: TURN UDP/TCP, TURN over TLS, a second TLS port (0: none), the relay port range and the metrics port."
  type = object({
    turn      = optional(number, 3478)
    tls       = optional(number, 5349)
    extra_tls = optional(number, 0)
    min_relay = optional(number, 61000)
    max_relay = optional(number, 65535)
    metrics   = optional(number, 9641)
  })
  default = {}
  validation {
    condition     = var.ports.min_relay > 32768 && var.ports.min_relay <= var.ports.max_relay && var.ports.max_relay <= 65535
    error_message = "ports: 32768 < min_relay <= max_relay <= 65535 (the kernel's ephemeral ports are moved below min_relay)."
  }
  validation {
    condition = alltrue([for p in [var.ports.turn, var.ports.tls, var.ports.metrics] :
    p > 0 && p < 65536 && (p < var.ports.min_relay || p > var.ports.max_relay)])
    error_message = "ports: turn, tls and metrics must be valid ports outside the relay port range."
  }
}

variable "advertise_host" {
  description = "Per node name, the public host name or address clients use (advertised as udp/tcp/tls on the region's ports). Nodes without one advertise their own addresses."
  type        = map(string)
  default     = {}
}

variable "address_discovery" {
  description = "How a node finds its addresses at boot: \"none\" (relay_ip/external_ip given in relay_options or node_overrides), \"aws\" or \"hcloud\" (private IPv4 from the route table, public IPv4 from the instance metadata service; the relay binds the private one and advertises the public one)."
  type        = string
  default     = "none"
  validation {
    condition     = contains(["none", "aws", "hcloud"], var.address_discovery)
    error_message = "address_discovery: one of none, aws, hcloud."
  }
}

variable "relay_options" {
  description = "Further keys of /etc/nexrtc/relay.toml for every node (see docs/config-reference.md), e.g. { user_quota = 32, max_bps = 4000000 }."
  type        = any
  default     = {}
}

variable "node_overrides" {
  description = "Per node name (relay1 …), keys of relay.toml that replace the region's for that node (e.g. its own listening_ip and ports when nodes share a host)."
  type        = map(any)
  default     = {}
}

variable "drain_grace" {
  description = "Seconds a stopping relay keeps serving its allocations before it exits (systemd's stop timeout is set 30 s above)."
  type        = number
  default     = 300
}

variable "install" {
  description = "How a node gets nexrtc: a .deb (deb_url) or a static binary (binary_url), checked against sha256."
  type = object({
    deb_url    = optional(string)
    binary_url = optional(string)
    sha256     = string
  })
  default = null
}

variable "ssh_cidrs" {
  description = "Networks allowed to reach SSH (tcp 22) on the nodes; empty: none."
  type        = list(string)
  default     = []
}

variable "metrics_cidrs" {
  description = "Networks allowed to scrape the relay's metrics port (the relay listens on metrics_listen from relay_options, by default 127.0.0.1)."
  type        = list(string)
  default     = []
}

variable "aws_lifecycle_hook" {
  description = "On AWS autoscaling groups: the group and its termination lifecycle hook. The node then watches its lifecycle state (instance metadata), drains when it is being terminated (systemctl stop nexrtc-relay) and completes the lifecycle action when the relay has exited; and it publishes its active allocations every minute (CloudWatch NexRTC/RelayAllocations per group) for load-based scaling. The relay's metrics must listen on 127.0.0.1 (the default)."
  type = object({
    group = string
    hook  = string
  })
  default = null
}
