# A region's registration in the controller (the admin API's PUT and, on destroy,
# DELETE /v1/admin/regions/{region}), made with curl from where Terraform runs: no
# Terraform provider speaks the controller's API. Pass the region module's
# `registration` output.

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
    script = abspath("${path.module}/register.sh")
    url    = "${trimsuffix(var.controller_url, "/")}${var.registration.path}"
    body   = var.registration.body
    key    = var.admin_key
  }

  provisioner "local-exec" {
    command     = "${self.input.script} put"
    environment = { URL = self.input.url, BODY = self.input.body, KEY = self.input.key }
  }

  provisioner "local-exec" {
    when        = destroy
    command     = "${self.input.script} delete"
    environment = { URL = self.input.url, KEY = self.input.key }
  }
}

output "url" {
  description = "The region's admin API URL."
  value       = terraform_data.region.input.url
}
