# A region's registration in the controller, made with `nexrtc admin` from where
# Terraform runs (no Terraform provider speaks the controller's API): the region is put
# on create; on destroy its relays still registered are drained (waiting until they
# have exited, at most drain_wait seconds) and the region is deleted. Pass the region
# module's `registration` output.

terraform {
  required_version = ">= 1.6"
}

variable "controller_url" {
  description = "A controller base URL reachable from where Terraform runs."
  type        = string
}

variable "admin_key" {
  description = "The controller's admin key."
  type        = string
  sensitive   = true
}

variable "nexrtc" {
  description = "The nexrtc binary where Terraform runs."
  type        = string
  default     = "nexrtc"
}

variable "drain_wait" {
  description = "On destroy, the longest wait for the region's relays to drain and exit."
  type        = number
  default     = 330
}

variable "registration" {
  description = "The region module's registration output: {method, path, body}."
  type = object({
    method = string
    path   = string
    body   = string
  })
}

resource "terraform_data" "region" {
  # A changed location or multiplier is a new PUT.
  triggers_replace = [var.registration.path, var.registration.body]

  input = {
    script     = abspath("${path.module}/register.sh")
    nexrtc     = var.nexrtc
    controller = var.controller_url
    region     = trimprefix(var.registration.path, "/v1/admin/regions/")
    body       = var.registration.body
    key        = var.admin_key
    drain_wait = var.drain_wait
  }

  provisioner "local-exec" {
    command = "${self.input.script} put"
    environment = {
      NEXRTC            = self.input.nexrtc
      NEXRTC_CONTROLLER = self.input.controller
      NEXRTC_ADMIN_KEY  = self.input.key
      REGION            = self.input.region
      BODY              = self.input.body
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "${self.input.script} delete"
    environment = {
      NEXRTC            = self.input.nexrtc
      NEXRTC_CONTROLLER = self.input.controller
      NEXRTC_ADMIN_KEY  = self.input.key
      REGION            = self.input.region
      DRAIN_WAIT        = self.input.drain_wait
    }
  }
}

output "region" {
  description = "The registered region's name."
  value       = terraform_data.region.input.region
}
