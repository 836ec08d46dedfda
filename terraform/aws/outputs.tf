output "autoscaling_groups" {
  description = "Region => autoscaling group name."
  value       = { for r, g in aws_autoscaling_group.relay : r => g.name }
}

output "firewall" {
  description = "Region => the ports its security group opens."
  value       = { for r, m in module.region : r => m.firewall }
}
