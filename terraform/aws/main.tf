# Relay regions on AWS: per region an autoscaling group across availability zones, a
# launch template whose user data is the region module's, a security group that opens
# exactly the region module's firewall rules, CPU target tracking, and a termination
# lifecycle hook that lets an instance go only after its relay has drained.

locals {
  hook = "${var.name_prefix}-drain"
}

module "region" {
  source   = "../modules/region"
  for_each = var.regions

  name               = each.key
  location           = { lat = each.value.lat, lon = each.value.lon, score_multiplier = each.value.score_multiplier }
  node_count         = 0 # instances come from the autoscaling group's template
  capacity           = each.value.capacity
  controller_urls    = var.controller_urls
  node_token         = var.node_token
  realm              = var.realm
  tls                = var.tls
  tls_key_pem        = var.tls_key_pem
  install            = var.install
  drain_grace        = var.drain_grace
  relay_options      = each.value.relay_options
  address_discovery  = "aws"
  aws_lifecycle_hook = { group = "${var.name_prefix}-${each.key}", hook = local.hook }
  ssh_cidrs          = var.ssh_cidrs
  metrics_cidrs      = var.metrics_cidrs
}

module "registration" {
  source   = "../modules/registration"
  for_each = var.regions

  controller_url = var.controller_urls[0]
  admin_key      = var.admin_key
  registration   = module.region[each.key].registration
  drain_wait     = var.drain_grace + 60
}

data "aws_ami" "debian" {
  most_recent = true
  owners      = ["136693071363"] # Debian
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

resource "aws_security_group" "relay" {
  for_each    = var.regions
  name        = "${var.name_prefix}-${each.key}-relay"
  description = "NexRTC relays of ${each.key}: exactly the relay's ports"
  vpc_id      = each.value.vpc_id

  dynamic "ingress" {
    for_each = module.region[each.key].firewall
    content {
      description      = ingress.value.description
      protocol         = ingress.value.protocol
      from_port        = ingress.value.from_port
      to_port          = ingress.value.to_port
      cidr_blocks      = [for c in ingress.value.cidrs : c if !strcontains(c, ":")]
      ipv6_cidr_blocks = [for c in ingress.value.cidrs : c if strcontains(c, ":")]
    }
  }

  egress {
    description      = "relayed traffic to peers, the controller, packages"
    protocol         = "-1"
    from_port        = 0
    to_port          = 0
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }
}

resource "aws_iam_role" "relay" {
  name = "${var.name_prefix}-relay"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "ec2.amazonaws.com" } }]
  })
}

# The nodes publish their allocations (NexRTC/RelayAllocations), nothing else.
resource "aws_iam_role_policy" "load_metric" {
  name = "${var.name_prefix}-put-load-metric"
  role = aws_iam_role.relay.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "cloudwatch:PutMetricData"
      Resource  = "*"
      Condition = { StringEquals = { "cloudwatch:namespace" = "NexRTC" } }
    }]
  })
}

# The drain watcher completes its own instance's lifecycle action, nothing else.
resource "aws_iam_role_policy" "lifecycle" {
  name = "${var.name_prefix}-complete-lifecycle-action"
  role = aws_iam_role.relay.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = "autoscaling:CompleteLifecycleAction"
      Resource = [for g in aws_autoscaling_group.relay : g.arn]
    }]
  })
}

resource "aws_iam_instance_profile" "relay" {
  name = "${var.name_prefix}-relay"
  role = aws_iam_role.relay.name
}

resource "aws_launch_template" "relay" {
  for_each      = var.regions
  name          = "${var.name_prefix}-${each.key}"
  image_id      = coalesce(var.ami_id, data.aws_ami.debian.id)
  instance_type = each.value.instance_type
  user_data     = base64encode(module.region[each.key].autoscaling_user_data)

  iam_instance_profile {
    name = aws_iam_instance_profile.relay.name
  }

  metadata_options {
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
  }

  network_interfaces {
    associate_public_ip_address = true
    ipv6_address_count          = 1
    security_groups             = [aws_security_group.relay[each.key].id]
  }
}

resource "aws_autoscaling_group" "relay" {
  for_each            = var.regions
  name                = "${var.name_prefix}-${each.key}"
  min_size            = each.value.min_nodes
  max_size            = each.value.max_nodes
  vpc_zone_identifier = each.value.subnet_ids # several availability zones

  launch_template {
    id      = aws_launch_template.relay[each.key].id
    version = aws_launch_template.relay[each.key].latest_version
  }

  # Scale-in and instance refresh wait for the relay to drain: the instance's watcher
  # stops the relay (which exits when its last allocation ends or the drain grace
  # passes) and then completes this hook; past the timeout the instance goes anyway.
  initial_lifecycle_hook {
    name                 = local.hook
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    heartbeat_timeout    = var.drain_grace + 90
    default_result       = "CONTINUE"
  }

  tag {
    key                 = "nexrtc-region"
    value               = each.key
    propagate_at_launch = true
  }
}

resource "aws_autoscaling_policy" "cpu" {
  for_each               = var.regions
  name                   = "${var.name_prefix}-${each.key}-cpu"
  autoscaling_group_name = aws_autoscaling_group.relay[each.key].name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    predefined_metric_specification {
      predefined_metric_type = "ASGAverageCPUUtilization"
    }
    target_value = var.target_cpu
  }
}

# Regions with a capacity also scale on the relays' own load: the allocations each node
# publishes every minute, kept near target_load of the capacity.
resource "aws_autoscaling_policy" "allocations" {
  for_each               = { for r, v in var.regions : r => v if v.capacity > 0 }
  name                   = "${var.name_prefix}-${each.key}-allocations"
  autoscaling_group_name = aws_autoscaling_group.relay[each.key].name
  policy_type            = "TargetTrackingScaling"

  target_tracking_configuration {
    customized_metric_specification {
      namespace   = "NexRTC"
      metric_name = "RelayAllocations"
      statistic   = "Average"
      unit        = "Count"
      metric_dimension {
        name  = "AutoScalingGroupName"
        value = aws_autoscaling_group.relay[each.key].name
      }
    }
    target_value = floor(each.value.capacity * var.target_load)
  }
}
