# The relay regions of one AWS region (the provider's), as data: adding a relay region
# is one entry of `regions`. A second AWS region is a second instance of this module
# with its own provider (see README.md).

variable "name_prefix" {
  description = "Prefix of every resource name (autoscaling groups are <prefix>-<region>)."
  type        = string
  default     = "nexrtc"
}

variable "regions" {
  description = "Relay regions in this AWS region: name => {lat, lon, min_nodes, max_nodes, subnet_ids (several availability zones), vpc_id, instance_type, …}."
  type = map(object({
    lat              = number
    lon              = number
    min_nodes        = number
    max_nodes        = number
    vpc_id           = string
    subnet_ids       = list(string)
    instance_type    = optional(string, "c7i.large")
    score_multiplier = optional(number, 1.0)
    capacity         = optional(number, 0)
    relay_options    = optional(any, {})
  }))
  validation {
    condition     = alltrue([for r in var.regions : r.min_nodes >= 0 && r.min_nodes <= r.max_nodes])
    error_message = "regions: 0 <= min_nodes <= max_nodes."
  }
  validation {
    condition     = alltrue([for r in var.regions : length(r.subnet_ids) >= 2])
    error_message = "regions: subnet_ids in at least two availability zones."
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
  description = "Seconds a terminating instance's relay keeps serving its allocations."
  type        = number
  default     = 300
  validation {
    condition     = var.drain_grace + 90 <= 7200
    error_message = "drain_grace: at most 7110 s (an autoscaling lifecycle hook waits at most 7200 s)."
  }
}

variable "target_load" {
  description = "Fraction of a relay's capacity (the region's capacity, in allocations) the groups of regions with a capacity keep on average, scaling on the relays' own allocations."
  type        = number
  default     = 0.7
  validation {
    condition     = var.target_load > 0 && var.target_load < 1
    error_message = "target_load: between 0 and 1."
  }
}

variable "target_cpu" {
  description = "Average CPU utilisation (%) the autoscaling groups keep."
  type        = number
  default     = 60
}

variable "ami_id" {
  description = "Image of the relays (null: the latest official Debian 12 amd64)."
  type        = string
  default     = null
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
