# The whole Hetzner Cloud fleet as data: adding a relay region is one entry of `regions`.

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "nexrtc"
}

variable "regions" {
  description = "Relay regions: name => {location (fsn1, nbg1, hel1, ash, hil, sin), lat, lon, min_nodes, max_nodes, server_type, …}. Hetzner Cloud has no autoscaling groups: a region runs min_nodes servers; raise it to scale out, lower it to scale in (removed servers drain before they go)."
  type = map(object({
    location         = string
    lat              = number
    lon              = number
    min_nodes        = number
    max_nodes        = number
    server_type      = optional(string, "cpx21")
    score_multiplier = optional(number, 1.0)
    capacity         = optional(number, 0)
    relay_options    = optional(any, {})
  }))
  validation {
    condition     = alltrue([for r in var.regions : r.min_nodes >= 0 && r.min_nodes <= r.max_nodes && r.max_nodes <= 10])
    error_message = "regions: 0 <= min_nodes <= max_nodes <= 10 (a spread placement group holds at most 10 servers)."
  }
}

variable "controller_urls" {
  description = "Controller base URLs the relays register with."
  type        = list(string)
}

variable "admin_key" {
  description = "The controller's admin key (registers the regions from where Terraform runs)."
  type        = string
  sensitive   = true
}

variable "node_token" {
  description = "The controller's node key."
  type        = string
  sensitive   = true
}

variable "realm" {
  description = "TURN realm."
  type        = string
}

variable "tls" {
  description = "As the region module's tls (none, files, acme)."
  type = object({
    mode        = string
    cert_pem    = optional(string)
    acme_domain = optional(string)
    acme_email  = optional(string)
  })
  default = { mode = "none" }
}

variable "tls_key_pem" {
  description = "The key of tls.cert_pem."
  type        = string
  default     = null
  sensitive   = true
}

variable "install" {
  description = "As the region module's install: {deb_url or binary_url, sha256}."
  type = object({
    deb_url    = optional(string)
    binary_url = optional(string)
    sha256     = string
  })
}

variable "drain_grace" {
  description = "Seconds a removed server's relay keeps serving its allocations."
  type        = number
  default     = 300
}

variable "ssh_keys" {
  description = "Names or ids of Hetzner SSH keys for the servers."
  type        = list(string)
  default     = []
}

variable "ssh_cidrs" {
  description = "Networks allowed to reach SSH."
  type        = list(string)
  default     = []
}

variable "metrics_cidrs" {
  description = "Networks allowed to scrape the relays' metrics port."
  type        = list(string)
  default     = []
}
