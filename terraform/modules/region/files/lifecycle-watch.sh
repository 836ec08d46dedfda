#!/bin/sh
# Rendered into relay nodes of AWS autoscaling groups by terraform/modules/region; run
# every 10 s by nexrtc-lifecycle-watch.timer. When the group is terminating this instance
# (its termination lifecycle hook holds it in Terminating:Wait), drain the relay — stop
# the unit, which waits for the last allocation or the drain grace — and then let the
# instance go. Usage: nexrtc-lifecycle-watch GROUP HOOK
set -eu
group="$1"
hook="$2"
imds=http://169.254.169.254/latest
token=$(curl -fsS -X PUT "$imds/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
get() { curl -fsS -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/$1"; }
state=$(get autoscaling/target-lifecycle-state 2>/dev/null || echo InService)
[ "$state" = Terminated ] || exit 0

instance=$(get instance-id)
region=$(get placement/region)
echo "nexrtc-lifecycle-watch: $instance is being terminated: draining the relay"
# Blocks until the relay has drained and exited (TimeoutStopSec = drain grace + 30 s).
systemctl stop nexrtc-relay.service || true
aws autoscaling complete-lifecycle-action --region "$region" \
    --auto-scaling-group-name "$group" --lifecycle-hook-name "$hook" \
    --instance-id "$instance" --lifecycle-action-result CONTINUE
echo "nexrtc-lifecycle-watch: relay drained, lifecycle action completed"
systemctl disable --now nexrtc-lifecycle-watch.timer
