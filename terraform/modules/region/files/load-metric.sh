#!/bin/sh
# Rendered into relay nodes of AWS autoscaling groups by terraform/modules/region; run
# every minute by nexrtc-load-metric.timer. Publishes the relay's active allocations to
# CloudWatch (namespace NexRTC, metric RelayAllocations, per autoscaling group), which
# the group's target tracking policy keeps near its target.
# Usage: nexrtc-load-metric GROUP METRICS_URL
set -eu
group="$1"
url="$2"
allocations=$(curl -fsS --max-time 5 "$url" |
    awk '/^nexrtc_relay_allocations_active[{ ]/ { sum += $NF } END { printf "%d", sum }')
imds=http://169.254.169.254/latest
token=$(curl -fsS -X PUT "$imds/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
region=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/placement/region")
aws cloudwatch put-metric-data --region "$region" --namespace NexRTC \
    --metric-name RelayAllocations --unit Count --value "$allocations" \
    --dimensions "AutoScalingGroupName=$group"
