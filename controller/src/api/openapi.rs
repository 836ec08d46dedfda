//! The OpenAPI 3.1 document served at `/v1/openapi.json`, written by hand.
//!
//! `controller/tests/api_openapi.rs` checks that its operations are exactly
//! [`super::route_table`] and that each one is routed, so a route cannot be added or
//! removed without updating this file.

use nexrtc_wire::routes;
use serde_json::{json, Map, Value};

fn err(description: &str) -> Value {
    json!({"description": description,
           "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array(of: &str) -> Value {
    json!({"type": "array", "items": schema(of)})
}

fn body(name: &str) -> Value {
    json!({"required": true, "content": {"application/json": {"schema": schema(name)}}})
}

/// An operation whose request body may be left out.
fn optional_body(mut operation: Value) -> Value {
    operation["requestBody"]["required"] = json!(false);
    operation
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

/// An operation. `security`: the scopes required (empty: public).
fn op(summary: &str, scopes: &[&str], request: Option<&str>, responses: Value) -> Value {
    let mut o = json!({"summary": summary, "responses": responses});
    if !scopes.is_empty() {
        o["security"] = json!([{"bearer": scopes}]);
        o["responses"]["401"] = err("missing_credentials, invalid_key or expired_token");
        o["responses"]["403"] = err("forbidden_scope");
    }
    if let Some(name) = request {
        o["requestBody"] = body(name);
        o["responses"]["400"] = err("invalid_json, invalid_request or a field-specific code");
        o["responses"]["413"] = err("body_too_large (16 KiB)");
    }
    o
}

fn with_params(mut operation: Value, names: &[&str]) -> Value {
    operation["parameters"] = Value::Array(names.iter().map(|n| param(n)).collect());
    operation
}

fn paths() -> Value {
    let admin = &["admin"];
    let tenant = || schema("Tenant");
    let mut paths = json!({
        "/v1/ice-servers": {
            "post": op("ICE servers with TURN credentials, nearest healthy relays first",
                &["ice"], Some("IceRequest"), json!({
                    "201": ok("RTCPeerConnection-ready iceServers and draft-uberti fields", schema("IceResponse")),
                    "429": err("rate_limited (Retry-After header)"),
                    "503": err("no_relays")})),
            "options": {"summary": "CORS preflight (origins allowed by a tenant's cors_origins)",
                "responses": {"204": {"description": "allowed"}, "403": err("forbidden_origin")}}
        },
        "/v1/client-tokens": {
            "post": op("Mint a short-lived client token for a browser (API keys only)",
                &["ice"], Some("TokenRequest"), json!({
                    "201": ok("the token", schema("TokenResponse")),
                    "429": err("rate_limited")}))
        },
        "/v1/rooms/{room}/tokens": {
            "post": with_params(op("Mint a room token: one participant of one signaling room \
                (API keys only)", &["ice"], Some("RoomTokenRequest"), json!({
                    "201": ok("the token and where to connect", schema("RoomTokenResponse")),
                    "429": err("rate_limited")})), &["room"])
        },
        "/v1/signal": {
            "get": {"summary": "WebRTC signaling: upgrades to a WebSocket carrying JSON messages \
                    (welcome, peer-joined, peer-left, offer, answer, candidate, ping/pong, leave, \
                    refresh/refreshed, token_expiring, error); see the controller's signal module docs",
                "parameters": [
                    {"name": "room", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "token", "in": "query", "required": false, "schema": {"type": "string"},
                     "description": "room token (or Authorization: Bearer)"}],
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    "307": {"description": "wrong_replica: another replica hosts the room",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": schema("WrongReplica")}}},
                    "400": err("invalid_room"),
                    "401": err("missing_credentials, invalid_token, expired_token or revoked"),
                    "403": err("wrong_room or forbidden_origin"),
                    "426": err("upgrade_required")}}
        },
        "/v1/admin/tenants": {
            "get": op("List tenants", admin, None, json!({"200": ok("tenants", array("Tenant"))})),
            "post": op("Create a tenant (with a first secret)", admin, Some("CreateTenant"),
                json!({"201": ok("the tenant", tenant()), "409": err("conflict")}))
        },
        "/v1/admin/tenants/{tenant}": {
            "get": with_params(op("Read a tenant", admin, None,
                json!({"200": ok("the tenant", tenant()), "404": err("not_found")})), &["tenant"]),
            "put": with_params(op("Change limits, CORS origins or policy", admin, Some("UpdateTenant"),
                json!({"200": ok("the tenant", tenant()), "404": err("not_found")})), &["tenant"]),
            "delete": with_params(op("Delete a tenant", admin, None,
                json!({"204": {"description": "deleted"}, "404": err("not_found")})), &["tenant"])
        },
        "/v1/admin/tenants/{tenant}/secrets": {
            "post": with_params(op("Rotate: add a newest secret, keep one previous", admin,
                Some("NewSecret"), json!({"201": ok("the tenant", tenant()), "404": err("not_found")})),
                &["tenant"])
        },
        "/v1/admin/tenants/{tenant}/secrets/{id}": {
            "delete": with_params(op("Retire a secret", admin, None, json!({
                "200": ok("the tenant", tenant()), "404": err("not_found"),
                "409": err("last_secret")})), &["tenant", "id"])
        },
        "/v1/admin/tenants/{tenant}/rooms/{room}/revocations": {
            "post": with_params(optional_body(op("Revoke the room tokens issued so far: one \
                participant's (body {\"participant\"}) or the whole room's (empty body); live \
                signaling connections holding one close with error revoked", admin,
                Some("RoomRevokeBody"), json!({"201": ok("the revocation", schema("RoomRevocation")),
                    "404": err("not_found: no such tenant")}))), &["tenant", "room"])
        },
        "/v1/admin/keys": {
            "get": op("List API keys (without the keys)", admin, None,
                json!({"200": ok("keys", array("Key"))})),
            "post": op("Create an API key; the key is shown only in this answer", admin,
                Some("CreateKey"), json!({"201": ok("the key", schema("NewKey"))}))
        },
        "/v1/admin/keys/{id}": {
            "delete": with_params(op("Delete an API key", admin, None, json!({
                "204": {"description": "deleted"}, "404": err("not_found")})), &["id"])
        },
        "/v1/admin/regions": {
            "get": op("List regions", admin, None, json!({"200": ok("regions", array("Region"))}))
        },
        "/v1/admin/regions/{region}": {
            "get": with_params(op("Read a region", admin, None, json!({
                "200": ok("the region", schema("Region")), "404": err("not_found")})), &["region"]),
            "put": with_params(op("Create or replace a region", admin, Some("RegionBody"),
                json!({"200": ok("the region", schema("Region"))})), &["region"]),
            "delete": with_params(op("Delete a region", admin, None, json!({
                "204": {"description": "deleted"}, "404": err("not_found")})), &["region"])
        },
        "/v1/admin/relays": {
            "get": {
                "summary": "List registered relays with load and state",
                "security": [{"bearer": ["admin"]}],
                "parameters": [{"name": "region", "in": "query", "required": false,
                                "schema": {"type": "string"}}],
                "responses": {"200": ok("relays", array("Relay")),
                              "401": err("missing_credentials or invalid_key"),
                              "403": err("forbidden_scope")}
            }
        },
        "/v1/admin/relays/{region}/drain": {
            "post": with_params(optional_body(op("Drain every relay of a region", admin,
                Some("DrainBody"), json!({"200": ok("drained relays", schema("Drained"))}))),
                &["region"])
        },
        "/v1/admin/relays/{region}/{node}/drain": {
            "post": with_params(optional_body(op("Drain one relay", admin, Some("DrainBody"),
                json!({"200": ok("drained relays", schema("Drained")), "404": err("not_found")}))),
                &["region", "node"])
        },
        "/v1/admin/revocations": {
            "get": op("List revoked usernames", admin, None,
                json!({"200": ok("revocations", array("Revocation"))})),
            "post": op("Revoke a username until its expiry", admin, Some("RevokeBody"),
                json!({"201": ok("the revocation", schema("Revocation"))}))
        },
        "/v1/admin/audit": {
            "get": {
                "summary": "The audit log: every admin mutation that succeeded, newest first \
                    (who: key id and name; what: method, path, status, the resource before and \
                    after with secrets redacted; when: Unix ms; from: client address)",
                "security": [{"bearer": ["admin"]}],
                "parameters": [
                    {"name": "since", "in": "query", "required": false,
                     "description": "Unix seconds: entries at or after it",
                     "schema": {"type": "integer", "minimum": 0}},
                    {"name": "limit", "in": "query", "required": false,
                     "description": "most entries (1 to 1000, default 100)",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
                "responses": {"200": ok("entries", array("AuditEntry")),
                              "400": err("invalid_request"),
                              "401": err("missing_credentials or invalid_key"),
                              "403": err("forbidden_scope")}
            }
        },
        (routes::REGISTER): {
            "post": op("Register a relay under a lease (edge agents)", &["node"],
                Some("Registration"), json!({"201": ok("lease, secrets, revocations", schema("Registered"))}))
        },
        (routes::HEARTBEAT): {
            "post": op("Keep a relay's lease alive and report load", &["node"], Some("Heartbeat"),
                json!({"200": ok("lease renewed", schema("HeartbeatAnswer")),
                       "404": err("lease_expired: register again")}))
        },
        (routes::LEAVE): {
            "post": op("Remove a relay that stops cleanly, ending its lease (edge agents)",
                &["node"], Some("Leave"),
                json!({"204": {"description": "the relay's record and lease are gone"},
                       "404": err("lease_expired: the record does not hold this lease; nothing removed")}))
        },
        (routes::PROBES): {
            "post": op("Report a round of latency probes (edge agents)", &["node"],
                Some("ProbeReport"), json!({"204": {"description": "stored"}}))
        },
        (routes::EVENTS): {
            "get": {
                "summary": "Server-sent events for one relay: secrets, revocations, drain, ping \
                    (full state first, then every change)",
                "security": [{"bearer": ["node"]}],
                "parameters": [
                    {"name": "region", "in": "query", "required": true, "schema": {"type": "string"}},
                    {"name": "node", "in": "query", "required": true, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                    "400": err("invalid_request"),
                    "401": err("missing_credentials or invalid_key"),
                    "403": err("forbidden_scope")}
            }
        },
        "/v1/status": {
            "get": op("The fleet at a glance: regions, relays with state, load and addresses",
                admin, None, json!({"200": ok("status", schema("Status"))}))
        },
        "/status": {
            "get": {"summary": "Operator page polling /v1/status (HTML)",
                "responses": {"200": {"description": "HTML page",
                                      "content": {"text/html": {"schema": {"type": "string"}}}}}}
        },
        "/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}
        },
        "/healthz": {
            "get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}
        },
        "/readyz": {
            "get": {"summary": "Readiness: the store snapshot is loaded and fresh",
                "responses": {"200": {"description": "ready: `snapshot_age_seconds`, \
    `store_answer_age_seconds`, and with GeoDNS on `dns` (`listen`, `zone`, `serial`: the SOA \
    serial its answers are at; `dnssec_ds`: the DS record of the zone's key when it is signed, \
    else null)"}, "503": err("not_ready")}}
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics (allowed networks only)",
                "responses": {"200": {"description": "text exposition format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                              "403": err("forbidden")}}
        }
    });
    for more in [client_probe_paths(), usage_paths()] {
        if let (Some(all), Some(more)) = (paths.as_object_mut(), more.as_object()) {
            all.extend(more.clone());
        }
    }
    paths
}

fn schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let endpoint = json!({"type": "object", "required": ["host", "port"],
        "properties": {"host": s("string"), "port": {"type": "integer", "minimum": 1, "maximum": 65535}}});
    let rate = json!({"type": "object", "required": ["per_second", "burst"],
        "properties": {"per_second": s("number"), "burst": {"type": "integer", "minimum": 1}}});
    let limits = json!({"type": "object", "properties": {
        "default_ttl": {"type": "integer", "default": 3600},
        "max_ttl": {"type": "integer", "default": 86400}, "rate_limit": schema("RateLimit")}});
    let scopes = json!({"type": "array", "items": {"enum": ["ice", "client_ip", "admin", "node"]}});
    let load = json!({"type": "object", "properties": {
        "allocations": s("integer"), "capacity": s("integer"), "pps_in": s("integer"),
        "pps_out": s("integer"), "bps_in": s("integer"), "bps_out": s("integer"), "cpu": s("number")}});
    let state = json!({"enum": ["active", "draining"]});
    let addresses = json!({"type": "object", "properties": {"udp": schema("Endpoint"),
        "tcp": schema("Endpoint"), "tls": schema("Endpoint"), "tls_alt": schema("Endpoint"),
        "quic": schema("Endpoint")}});
    let transports = json!({"type": "array", "items": {"enum": ["udp", "tcp", "tls", "quic"]}});
    let strings = json!({"type": "array", "items": s("string")});
    let lease = lease_schema();
    let mut all = json!({
        "Error": {"type": "object", "required": ["code", "message"],
            "properties": {"code": s("string"), "message": s("string")}},
        "IceRequest": {"type": "object", "additionalProperties": false, "properties": {
            "ttl": {"type": "integer", "minimum": 1, "description": "seconds, up to the tenant's max_ttl"},
            "user": s("string"), "region": s("string"),
            "client_ip": {"type": "string", "description": "keys with scope client_ip only"}}},
        "IceServer": {"type": "object", "required": ["urls"], "properties": {
            "urls": strings, "username": s("string"), "credential": s("string")}},
        "IceResponse": {"type": "object",
            "required": ["iceServers", "ttl", "expires_at", "regions", "username", "password", "uris"],
            "properties": {"iceServers": array("IceServer"), "ttl": s("integer"),
                "expires_at": {"type": "string", "format": "date-time"}, "regions": strings,
                "username": s("string"), "password": s("string"), "uris": strings,
                "connect_udp": {"type": "array", "items": s("string"), "description":
                    "RFC 9298 URI templates of the selected relays' QUIC relays (CONNECT-UDP over \
                     HTTP/3), in ranking order; authenticate with Proxy-Authorization: Basic \
                     base64(username:password). Absent when none offers one."},
                "explain": {"type": "object", "description": "?explain=1 with an admin key"}}},
        "TokenRequest": {"type": "object", "required": ["user"], "additionalProperties": false,
            "properties": {"user": s("string"), "ttl": {"type": "integer", "minimum": 1, "maximum": 600}}},
        "TokenResponse": {"type": "object", "properties": {"token": s("string"), "user": s("string"),
            "ttl": s("integer"), "expires_at": {"type": "string", "format": "date-time"}}},
        "RoomTokenRequest": {"type": "object", "additionalProperties": false,
            "properties": {"participant": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                "ttl": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 600}}},
        "RoomTokenResponse": {"type": "object",
            "required": ["token", "room", "participant", "ttl", "expires_at", "signal_url"],
            "properties": {"token": s("string"), "room": s("string"), "participant": s("string"),
                "ttl": s("integer"), "expires_at": {"type": "string", "format": "date-time"},
                "signal_url": {"type": "string",
                    "description": "path on this replica, or absolute URL of the replica hosting the room"}}},
        "WrongReplica": {"type": "object", "required": ["code", "message", "location"],
            "properties": {"code": {"const": "wrong_replica"}, "message": s("string"),
                "location": s("string")}},
        "RateLimit": rate,
        "Limits": limits,
        "Secret": {"type": "object", "properties": {"id": s("string"), "value": s("string"),
            "created_at": s("integer")}},
        "Tenant": {"type": "object", "properties": {"name": s("string"), "secrets": array("Secret"),
            "limits": schema("Limits"), "cors_origins": strings,
            "policy": {"type": "object", "properties": {"cut_at_expiry": s("boolean")}},
            "created_at": s("integer")}},
        "CreateTenant": {"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": s("string"), "limits": schema("Limits"), "cors_origins": strings,
                "policy": {"type": "object"}, "secret": s("string")}},
        "UpdateTenant": {"type": "object", "additionalProperties": false, "properties": {
            "limits": schema("Limits"), "cors_origins": strings, "policy": {"type": "object"}}},
        "NewSecret": {"type": "object", "additionalProperties": false,
            "properties": {"value": s("string")}},
        "Key": {"type": "object", "properties": {"id": s("string"), "name": s("string"),
            "tenant": s("string"), "scopes": scopes.clone(), "rate_limit": schema("RateLimit"),
            "created_at": s("integer")}},
        "NewKey": {"type": "object", "properties": {"key": s("string"), "id": s("string"),
            "name": s("string"), "tenant": s("string"), "scopes": scopes.clone(),
            "created_at": s("integer")}},
        "CreateKey": {"type": "object", "required": ["scopes"], "additionalProperties": false,
            "properties": {"name": s("string"), "tenant": s("string"), "scopes": scopes,
                "rate_limit": schema("RateLimit")}},
        "Region": {"type": "object", "properties": {"name": s("string"), "lat": s("number"),
            "lon": s("number"), "score_multiplier": s("number")}},
        "RegionBody": {"type": "object", "required": ["lat", "lon"], "additionalProperties": false,
            "properties": {"lat": s("number"), "lon": s("number"), "score_multiplier": s("number")}},
        "Endpoint": endpoint,
        "Load": load,
        "Relay": {"type": "object", "properties": {
            "id": {"type": "string", "description": "<region>/<node>"},
            "node": s("string"), "region": s("string"),
            "addresses": addresses.clone(), "transports": transports.clone(), "load": schema("Load"),
            "state": state.clone(), "version": s("string"), "registered_at": s("integer"),
            "updated_at": s("integer"), "lease": lease, "load_fraction": s("number")}},
        "Drained": {"type": "object", "properties": {"drained": strings}},
        "DrainBody": {"type": "object", "additionalProperties": false, "properties": {
            "deadline_secs": {"type": "integer", "minimum": 1, "maximum": 604800,
                "description": "the relay exits this many seconds from now even with clients left; \
                                default: the relay's --drain-grace"}}},
        "RevokeBody": {"type": "object", "required": ["username"], "additionalProperties": false,
            "properties": {"username": s("string")}},
        "Revocation": {"type": "object", "properties": {"tenant": s("string"),
            "username": s("string"), "until": s("integer"), "revoked_at": s("integer")}},
        "RoomRevokeBody": {"type": "object", "additionalProperties": false,
            "properties": {"participant": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"}}},
        "RoomRevocation": {"type": "object", "required": ["tenant", "room", "revoked_at", "until"],
            "properties": {"tenant": s("string"), "room": s("string"), "participant": s("string"),
                "revoked_at": {"type": "integer", "description": "tokens issued at or before this \
                    Unix second are revoked"},
                "until": {"type": "integer", "description": "the record expires then (Unix seconds)"}}}
    });
    let agent = agent_schemas(&addresses, &transports, &state, &strings);
    let status = status_schemas(&addresses, &transports, &state);
    let probes = client_probe_schemas();
    let audit = json!({"AuditEntry": {"type": "object",
        "required": ["at_ms", "key_id", "method", "path", "status", "before", "after"],
        "properties": {"at_ms": s("integer"), "key_id": s("string"), "key_name": s("string"),
            "method": s("string"), "path": s("string"), "status": s("integer"),
            "from": {"type": ["string", "null"]}, "before": {}, "after": {}}}});
    let usage = usage_schemas();
    if let Some(all) = all.as_object_mut() {
        for more in [agent, status, probes, audit, usage] {
            if let Some(more) = more.as_object() {
                all.extend(more.clone());
            }
        }
    }
    all
}

/// Usage metering's routes: the agents' reports, the admin API's answers.
fn usage_paths() -> Value {
    json!({
        (routes::USAGE): {
            "post": op("Report per-minute tenant usage: buckets merged (field-wise maximum) into \
                    the stored ones, so repeats and reorderings count once (edge agents)",
                &["node"], Some("UsageReport"),
                json!({"200": ok("stored", schema("UsageAnswer")),
                       "404": err("lease_expired: keep the buckets, register, send again")}))
        },
        "/v1/admin/tenants/{tenant}/usage": {
        "get": {
            "summary": "A tenant's usage per region in buckets of `step` seconds: allocation \
                and tunnel minutes, bytes each way (JSON, or CSV with format=csv or \
                Accept: text/csv)",
            "security": [{"bearer": ["admin"]}],
            "parameters": [
                {"name": "tenant", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "from", "in": "query", "required": false,
                 "description": "Unix seconds, rounded down to the minute (default: an hour before to)",
                 "schema": {"type": "integer", "minimum": 0}},
                {"name": "to", "in": "query", "required": false,
                 "description": "Unix seconds, exclusive, rounded up to the minute (default: now); at most 31 days after from",
                 "schema": {"type": "integer", "minimum": 0}},
                {"name": "step", "in": "query", "required": false,
                 "description": "bucket width in seconds, a multiple of 60 (default 60)",
                 "schema": {"type": "integer", "minimum": 60}},
                {"name": "region", "in": "query", "required": false,
                 "description": "only this region", "schema": {"type": "string"}},
                {"name": "format", "in": "query", "required": false,
                 "schema": {"type": "string", "enum": ["json", "csv"]}}],
            "responses": {"200": {"description": "usage",
                                  "content": {"application/json": {"schema": schema("TenantUsage")},
                                              "text/csv": {"schema": {"type": "string"}}}},
                          "400": err("invalid_request or unknown_tenant"),
                          "401": err("missing_credentials or invalid_key"),
                          "403": err("forbidden_scope")}
        }
    }})
}

/// Usage metering: the agents' reports and the admin API's answer.
fn usage_schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    let usage = json!({"type": "object",
        "properties": {"allocation_ms": s("integer"), "tunnel_ms": s("integer"),
            "bytes_to_peer": s("integer"), "bytes_to_client": s("integer")}});
    let row = json!({"type": "object",
        "required": ["start", "region", "allocation_minutes", "tunnel_minutes", "bytes_to_peer",
            "bytes_to_client"],
        "properties": {"start": s("integer"), "region": s("string"),
            "allocation_minutes": s("number"), "tunnel_minutes": s("number"),
            "bytes_to_peer": s("integer"), "bytes_to_client": s("integer")}});
    json!({
        "UsageReport": {"type": "object",
            "required": ["region", "node", "lease", "boot", "minutes"],
            "properties": {"region": s("string"), "node": s("string"), "lease": lease_schema(),
                "boot": {"type": "string", "pattern": "^[A-Za-z0-9]{1,32}$"},
                "minutes": {"type": "array", "items": {"type": "object",
                    "required": ["minute", "tenants"],
                    "properties": {"minute": {"type": "integer",
                            "description": "the minute's start, Unix seconds"},
                        "tenants": {"type": "object", "additionalProperties": usage}}}}}},
        "UsageAnswer": {"type": "object", "properties": {"written": s("integer")}},
        "TenantUsage": {"type": "object",
            "required": ["tenant", "from", "to", "step", "buckets", "totals"],
            "properties": {"tenant": s("string"), "from": s("integer"), "to": s("integer"),
                "step": s("integer"), "buckets": {"type": "array", "items": row.clone()},
                "totals": {"type": "array", "items": row}}}
    })
}

/// Lease ids are decimal strings: etcd's do not fit a JavaScript number.
fn lease_schema() -> Value {
    json!({"type": "string", "pattern": "^-?[0-9]+$",
        "description": "lease id, a decimal string (64-bit)"})
}

/// Schema of `GET /v1/status`.
fn status_schemas(addresses: &Value, transports: &Value, state: &Value) -> Value {
    let s = |t: &str| json!({"type": t});
    json!({
        "Status": {"type": "object", "properties": {"generated_at": s("integer"),
            "snapshot_age_seconds": {"type": ["number", "null"]},
            "regions": {"type": "array", "items": {"type": "object", "properties": {
                "name": s("string"), "lat": s("number"), "lon": s("number"),
                "score_multiplier": s("number"), "relays": s("integer"), "active": s("integer"),
                "draining": s("integer"), "allocations": s("integer")}}},
            "relays": {"type": "array", "items": {"type": "object", "properties": {
                "id": s("string"), "region": s("string"), "node": s("string"),
                "state": state, "health": {"enum": ["ok", "full", "draining"]},
                "load_fraction": s("number"), "load": schema("Load"),
                "addresses": addresses, "transports": transports,
                "version": s("string"), "registered_at": s("integer"),
                "updated_at": s("integer"), "region_known": s("boolean")}}},
            "mesh": {"type": "array", "items": {"type": "object", "properties": {
                "from": s("string"), "to": s("string"), "rtt_ms": s("number"),
                "loss": s("number"), "measured_at": s("integer")}}}}}
    })
}

/// Schemas of the edge agents' routes.
fn agent_schemas(addresses: &Value, transports: &Value, state: &Value, strings: &Value) -> Value {
    let s = |t: &str| json!({"type": t});
    json!({
        "Registration": {"type": "object", "required": ["node", "region", "addresses", "transports"],
            "additionalProperties": false, "properties": {"node": s("string"), "region": s("string"),
                "addresses": addresses, "transports": transports, "load": schema("Load"),
                "state": state.clone(), "version": s("string")}},
        "Registered": {"type": "object", "properties": {"lease": lease_schema(),
            "lease_ttl_secs": s("integer"), "heartbeat_interval_ms": s("integer"),
            "tenants": {"type": "array", "items": {"type": "object", "properties": {
                "name": s("string"), "secrets": strings, "cut_at_expiry": s("boolean")}}},
            "revoked": array("Revocation"),
            "probe_targets": {"type": "array", "items": {"type": "object", "properties": {
                "region": s("string"), "node": s("string"), "stun": s("string")}}}}},
        "Heartbeat": {"type": "object", "required": ["region", "node", "lease"],
            "additionalProperties": false, "properties": {"region": s("string"),
                "node": s("string"), "lease": lease_schema(), "load": schema("Load"),
                "state": state.clone()}},
        "Leave": {"type": "object", "required": ["region", "node", "lease"],
            "additionalProperties": false, "properties": {"region": s("string"),
                "node": s("string"), "lease": lease_schema()}},
        "ProbeReport": {"type": "object", "required": ["from_region", "from_node", "results"],
            "properties": {"from_region": s("string"), "from_node": s("string"),
                "results": {"type": "array", "items": {"type": "object",
                    "required": ["to_region", "to_node", "loss"], "properties": {
                        "to_region": s("string"), "to_node": s("string"),
                        "rtt_ms": {"type": ["number", "null"]}, "loss": s("number"),
                        "samples": s("integer")}}}}},
        "HeartbeatAnswer": {"type": "object", "properties": {"lease_ttl_secs": s("integer"),
            "heartbeat_interval_ms": s("integer"), "state": state, "written": s("boolean")}}
    })
}

/// The whole document.
pub fn document() -> Value {
    let mut doc = Map::new();
    doc.insert("openapi".into(), json!("3.1.0"));
    doc.insert(
        "info".into(),
        json!({
            "title": "NexRTC controller API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "ICE-config API (TURN REST credentials for the nearest healthy \
                relays), WebRTC signaling, admin API and relay registration. Errors are JSON \
                {\"code\", \"message\"}."
        }),
    );
    doc.insert("paths".into(), paths());
    doc.insert(
        "components".into(),
        json!({
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "API key (nxk_…) or client token (nxt_…)"}}
        }),
    );
    Value::Object(doc)
}

/// The client-probe API's bodies (`nexrtc_wire::client`).
fn client_probe_schemas() -> Value {
    let s = |t: &str| json!({"type": t});
    json!({
        "ProbeTargetsRequest": {"type": "object", "additionalProperties": false, "properties": {
            "client_ip": {"type": "string", "description": "keys with scope client_ip only"}}},
        "ProbeTargets": {"type": "object", "required": ["targets"], "properties": {
            "targets": {"type": "array", "maxItems": 32, "items": {"type": "object",
                "required": ["region", "stun", "url"], "properties": {"region": s("string"),
                    "stun": {"type": "string", "description": "host:port for STUN over UDP"},
                    "url": {"type": "string", "description": "stun:host:port, for RTCPeerConnection"}}}},
            "network": {"type": "string", "description": "the caller's network (/24 or /48)"}}},
        "ClientProbeReport": {"type": "object", "required": ["results"], "additionalProperties": false,
            "properties": {"results": {"type": "array", "maxItems": 32, "items": {"type": "object",
                "required": ["region", "rtt_ms"], "additionalProperties": false,
                "properties": {"region": s("string"),
                    "rtt_ms": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000}}}},
                "client_ip": {"type": "string", "description": "keys with scope client_ip only"}}},
        "ClientProbeAnswer": {"type": "object", "required": ["network", "accepted"], "properties": {
            "network": s("string"), "accepted": s("integer"), "home": s("string")}}
    })
}

/// The client-probe routes and the browser helper.
fn client_probe_paths() -> Value {
    json!({
        "/v1/client-probes/targets": {
            "post": optional_body(op("Where to measure: one relay's STUN address per region, nearest first",
                &["ice"], Some("ProbeTargetsRequest"), json!({
                    "200": ok("the targets", schema("ProbeTargets")),
                    "429": err("rate_limited")}))),
            "options": {"summary": "CORS preflight",
                "responses": {"204": {"description": "allowed"}, "403": err("forbidden_origin")}}
        },
        "/v1/client-probes": {
            "post": op("Report the RTTs this client measured; ICE answers for its network rank by them",
                &["ice"], Some("ClientProbeReport"), json!({
                    "202": ok("counted for the network", schema("ClientProbeAnswer")),
                    "429": err("rate_limited"),
                    "503": err("store_unavailable")})),
            "options": {"summary": "CORS preflight",
                "responses": {"204": {"description": "allowed"}, "403": err("forbidden_origin")}}
        },
        "/nexrtc-probe.js": {
            "get": {"summary": "Browser helper: nexrtcProbe({baseUrl, token}) measures every region \
                    with STUN and reports to /v1/client-probes",
                "responses": {"200": {"description": "JavaScript",
                    "content": {"text/javascript": {"schema": {"type": "string"}}}}}}
        }
    })
}
