#!/bin/sh
# The region's registration in the controller, with nexrtc admin (NEXRTC, and
# NEXRTC_CONTROLLER / NEXRTC_ADMIN_KEY, REGION, BODY or DRAIN_WAIT in the environment;
# see main.tf): register.sh put | delete
set -eu
case "$1" in
put)
    # BODY is the region module's JSON: {"lat":…,"lon":…,"score_multiplier":…}.
    field() { printf '%s' "$BODY" | sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }
    "$NEXRTC" admin regions put "$REGION" --lat "$(field lat)" --lon "$(field lon)" \
        --score-multiplier "$(field score_multiplier)"
    ;;
delete)
    # Relays still registered in the region drain first (and exit when empty).
    "$NEXRTC" admin relays drain "$REGION" --wait "$DRAIN_WAIT"
    if ! out=$("$NEXRTC" admin regions delete "$REGION" 2>&1); then
        case "$out" in
        *not_found*) echo "region $REGION was already gone" ;;
        *) echo "$out" >&2; exit 1 ;;
        esac
    else
        echo "region $REGION deleted"
    fi
    ;;
*)
    echo "usage: register.sh put|delete" >&2
    exit 2
    ;;
esac
