#!/bin/sh
# The local example's provisioner: a relay node as a process on this machine.
# Usage (environment as main.tf sets it): node.sh start | stop
set -eu

alive() {
    # A process that exists and is not a zombie (an exited node nobody reaped yet).
    state=$(sed -n 's/^[0-9]* ([^)]*) \(.\).*/\1/p' "/proc/$1/stat" 2>/dev/null || true)
    [ -n "$state" ] && [ "$state" != Z ]
}

case "$1" in
start)
    umask 077
    mkdir -p "$NODE_DIR"
    cd "$NODE_DIR"
    if [ -f pid ] && alive "$(cat pid)"; then
        echo "$NODE_DIR: a node is still running (pid $(cat pid)); stop it first" >&2
        exit 1
    fi
    printf '%s' "$RELAY_TOML" > relay.toml
    printf '%s\n' "$NODE_ENV" > env
    set -a
    . ./env
    set +a
    # shellcheck disable=SC2086 # NEXRTC_RELAY_ARGS is a list of flags
    "$NEXRTC" relay --config relay.toml $NEXRTC_RELAY_ARGS --check-config
    : > relay.log
    # shellcheck disable=SC2086
    RUST_LOG="${RUST_LOG:-info}" setsid "$NEXRTC" relay --config relay.toml $NEXRTC_RELAY_ARGS \
        </dev/null >relay.log 2>&1 &
    echo $! > pid
    i=0
    until curl -fsS --max-time 1 -o /dev/null "$READY_URL" 2>/dev/null && grep -q registered relay.log; do
        if ! alive "$(cat pid)"; then
            echo "$NODE_DIR: the relay exited:" >&2
            tail -n 20 relay.log >&2
            exit 1
        fi
        i=$((i + 1))
        if [ "$i" -gt 300 ]; then
            echo "$NODE_DIR: not ready and registered within 30 s:" >&2
            tail -n 20 relay.log >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$NODE_DIR: relay ready and registered (pid $(cat pid))"
    ;;
stop)
    [ -f "$NODE_DIR/pid" ] || exit 0
    pid=$(cat "$NODE_DIR/pid")
    if alive "$pid"; then
        # SIGTERM drains: no new allocations, the node leaves the ICE answers, and the
        # process exits when its last allocation ends or the drain grace has passed.
        kill -TERM "$pid"
        deadline=$(($(date +%s) + TIMEOUT))
        while alive "$pid"; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                echo "$NODE_DIR: still running ${TIMEOUT} s after SIGTERM: killed" >&2
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.1
        done
    fi
    rm -f "$NODE_DIR/pid"
    echo "$NODE_DIR: node stopped"
    ;;
*)
    echo "usage: node.sh start|stop" >&2
    exit 2
    ;;
esac
