# The control plane: controller replicas and a 3- or 5-member etcd cluster, with TLS
# between all of them (etcd peers, the controllers' etcd clients, the API), rendered as
# cloud-init user data per machine. The operator supplies the certificates (one CA);
# the controllers' API keys are made once, at the first apply, and kept in the state.

variable "etcd_members" {
  description = "etcd members: name => private IPv4 address (3 or 5 members, on separate hosts or zones)."
  type        = map(string)
  validation {
    condition     = contains([3, 5], length(var.etcd_members))
    error_message = "etcd_members: 3 or 5 members (a quorum that survives one or two failures)."
  }
  validation {
    condition     = alltrue([for n, ip in var.etcd_members : can(regex("^[a-z0-9][a-z0-9-]{0,62}$", n)) && can(cidrhost("${ip}/32", 0))])
    error_message = "etcd_members: names of a-z 0-9 -, values IPv4 addresses."
  }
}

variable "controllers" {
  description = "Controller replicas: name => {ip (private IPv4), url (where clients and relays reach it, https://…)}."
  type = map(object({
    ip  = string
    url = string
  }))
  validation {
    condition     = length(var.controllers) >= 1 && alltrue([for c in var.controllers : can(regex("^https://[^/\\s]+/?$", c.url))])
    error_message = "controllers: at least one, each with an https:// url without a path."
  }
}

variable "api_port" {
  description = "Port of the controllers' HTTPS API (ICE servers, admin, agents, /metrics)."
  type        = number
  default     = 443
}

variable "tls" {
  description = "Certificates (PEM) signed by ca_pem: per etcd member (server and client auth, for its IP), the controllers' etcd client certificate, and the API certificate of each controller."
  type = object({
    ca_pem             = string
    etcd_member_pem    = map(string)
    etcd_client_pem    = string
    controller_api_pem = map(string)
  })
}

variable "tls_keys" {
  description = "The private keys of tls: etcd_member (per member), etcd_client, controller_api (per controller)."
  type = object({
    etcd_member    = map(string)
    etcd_client    = string
    controller_api = map(string)
  })
  sensitive = true
}

variable "tenant" {
  description = "A first tenant to create at the first start (null: none); its secret is made once like the keys."
  type        = string
  default     = null
}

variable "install" {
  description = "How a controller gets nexrtc: a .deb (deb_url) or a static binary (binary_url), checked against sha256; null: already on the image."
  type = object({
    deb_url    = optional(string)
    binary_url = optional(string)
    sha256     = string
  })
  default = null
}

variable "config_dir" {
  description = "Where the machines' configuration goes (tests render into a directory of their own)."
  type        = string
  default     = "/etc/nexrtc"
}

variable "etcd_dir" {
  description = "Where the etcd members' TLS files go."
  type        = string
  default     = "/etc/etcd/tls"
}

variable "controller_options" {
  description = "Further top-level keys of controller.toml (see docs/config-reference.md), e.g. { geoip_db = \"/var/lib/GeoIP/GeoLite2-City.mmdb\" }."
  type        = any
  default     = {}
}

variable "ssh_cidrs" {
  description = "Networks allowed to reach SSH (tcp 22) on the machines; empty: none."
  type        = list(string)
  default     = []
}

variable "etcd_data_dir" {
  description = "Where the etcd members' data goes (a directory per member name below it)."
  type        = string
  default     = "/var/lib/etcd/nexrtc"
}
