#!/bin/sh
# Rendered into every relay node by terraform/modules/region and run once at first boot,
# before the relay starts: finds the node's addresses and adds them to the relay's flags
# in /etc/default/nexrtc-relay. Usage: nexrtc-discover-addresses none|aws|hcloud
#   none    addresses come from relay.toml (relay_ip / external_ip); nothing to do.
#   aws     bind the private IPv4 (the route's source address), advertise the public
#           IPv4 of the instance metadata service (IMDSv2) as --external-ip PUBLIC/PRIVATE.
#   hcloud  the public IPv4 is on the interface: bind it (--relay-ip), nothing to map.
set -eu
mode="${1:-none}"
env_file=/etc/default/nexrtc-relay
[ "$mode" = none ] && exit 0

private=$(ip -4 route get 192.0.2.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p')
case "$mode" in
aws)
    token=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token \
        -H 'X-aws-ec2-metadata-token-ttl-seconds: 60')
    public=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" \
        http://169.254.169.254/latest/meta-data/public-ipv4 || true)
    ;;
hcloud)
    public=$(curl -fsS http://169.254.169.254/hetzner/v1/metadata/public-ipv4 || true)
    ;;
*)
    echo "nexrtc-discover-addresses: unknown mode $mode (none, aws, hcloud)" >&2
    exit 2
    ;;
esac
[ -n "$private" ] || { echo "nexrtc-discover-addresses: no IPv4 route source address" >&2; exit 1; }

args="--relay-ip $private"
if [ -n "$public" ] && [ "$public" != "$private" ]; then
    args="$args --external-ip $public/$private"
fi
# Append to NEXRTC_RELAY_ARGS (the unit passes it to nexrtc relay).
if grep -q '^NEXRTC_RELAY_ARGS=' "$env_file"; then
    sed -i "s|^NEXRTC_RELAY_ARGS=\(.*\)\$|NEXRTC_RELAY_ARGS=\1 $args|" "$env_file"
else
    echo "NEXRTC_RELAY_ARGS=$args" >> "$env_file"
fi
echo "nexrtc-discover-addresses: $args"
