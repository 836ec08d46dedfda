variable "nexrtc" {
  description = "Path of the nexrtc binary the nodes run."
  type        = string
}

variable "controller_url" {
  description = "The controller the nodes register with and the region is registered in (e.g. http://127.0.0.1:8080 of `nexrtc dev`)."
  type        = string
}

variable "admin_key" {
  description = "The controller's admin key (registers and removes the region)."
  type        = string
  sensitive   = true
}

variable "node_token" {
  description = "The controller's node key."
  type        = string
  sensitive   = true
}

variable "region" {
  description = "Region name."
  type        = string
  default     = "local-1"
}

variable "location" {
  description = "The region's coordinates."
  type        = object({ lat = number, lon = number })
  default     = { lat = 53.35, lon = -6.26 }
}

variable "node_count" {
  description = "Relay nodes: processes on this machine, node N on 127.0.<subnet>.N."
  type        = number
  default     = 1
}

variable "subnet" {
  description = "Third octet of the nodes' loopback addresses (127.0.<subnet>.N)."
  type        = number
  default     = 77
}

variable "turn_port" {
  description = "TURN port of every node (each node has its own address)."
  type        = number
  default     = 3478
}

variable "metrics_port" {
  description = "Metrics/health port of every node, on its own address."
  type        = number
  default     = 9641
}

variable "relay_ports" {
  description = "Relay port range of every node."
  type        = object({ min = number, max = number })
  default     = { min = 61000, max = 61999 }
}

variable "drain_grace" {
  description = "Seconds a removed node keeps serving its allocations before it exits."
  type        = number
  default     = 60
}

variable "work_dir" {
  description = "Where the nodes' configurations, logs and pid files go."
  type        = string
  default     = "/tmp/nexrtc-terraform-local"
}
