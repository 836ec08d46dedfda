#!/bin/sh
# The region's registration in the controller: register.sh put | delete
# (URL, KEY and, for put, BODY in the environment; see main.tf).
set -eu
case "$1" in
put)
    curl -fsS --max-time 10 --retry 3 -X PUT -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' -d "$BODY" "$URL" >/dev/null
    echo "region registered: PUT $URL"
    ;;
delete)
    code=$(curl -sS --max-time 10 --retry 3 -o /dev/null -w '%{http_code}' -X DELETE \
        -H "Authorization: Bearer $KEY" "$URL")
    case "$code" in
    2??|404) echo "region removed: DELETE $URL ($code)" ;;
    *) echo "DELETE $URL answered $code" >&2; exit 1 ;;
    esac
    ;;
*)
    echo "usage: register.sh put|delete" >&2
    exit 2
    ;;
esac
