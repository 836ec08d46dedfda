#!/usr/bin/env python3
"""Writes the Grafana dashboards in monitoring/grafana/dashboards/ (run it after changing a
panel; tests/monitoring_live.rs evaluates every query of the written files against a real
Prometheus scraping a running network)."""
import json, os
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dashboards")
DS = {"type": "prometheus", "uid": "${datasource}"}
R = "$__rate_interval"

def panel(title, exprs, kind="timeseries", unit=None, desc=None, legend=None):
    if isinstance(exprs, str):
        exprs = [exprs]
    targets = []
    for i, e in enumerate(exprs):
        t = {"datasource": DS, "expr": e, "refId": chr(65 + i)}
        if isinstance(legend, list):
            t["legendFormat"] = legend[i]
        elif legend:
            t["legendFormat"] = legend
        targets.append(t)
    p = {"type": kind, "title": title, "datasource": DS, "targets": targets,
         "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if desc:
        p["description"] = desc
    return p

def var_ds():
    return {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0}

def var(name, label, query, multi=False):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "definition": query, "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
            "current": {}, "hide": 0}

def dashboard(uid, title, desc, panels, variables=()):
    x = y = 0
    for p in panels:
        w = 6 if p["type"] == "stat" else 12
        h = 4 if p["type"] == "stat" else 8
        if x + w > 24:
            x = 0
            y += 8
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
    for i, p in enumerate(panels):
        p["id"] = i + 1
    d = {"uid": uid, "title": title, "description": desc, "tags": ["nexrtc"],
         "schemaVersion": 39, "version": 1, "editable": True, "time": {"from": "now-1h", "to": "now"},
         "refresh": "30s", "timezone": "", "panels": panels,
         "templating": {"list": [var_ds(), *variables]},
         "annotations": {"list": []}, "links": [
             {"title": "NexRTC dashboards", "type": "dashboards", "tags": ["nexrtc"], "asDropdown": True}]}
    with open(os.path.join(OUT, uid + ".json"), "w") as f:
        json.dump(d, f, indent=2)
        f.write("\n")

CTRL = 'job="nexrtc-controller"'
RELAY = 'job="nexrtc-relay"'

dashboard("nexrtc-fleet", "NexRTC fleet", "Regions, relays, allocations, traffic and the ICE API across the whole network.", [
    panel("Regions with an active relay", 'count(max by (region) (nexrtc_controller_relays{state="active"}) > 0)', "stat"),
    panel("Relay targets up", f'sum(up{{{RELAY}}})', "stat"),
    panel("Active allocations", 'sum(nexrtc_relay_allocations_active)', "stat"),
    panel("Controller replicas up", f'sum(up{{{CTRL}}})', "stat"),
    panel("Relays by state (registry)", 'max by (state) (sum by (instance, state) (nexrtc_controller_relays))', legend="{{state}}"),
    panel("Relays by region and state", 'max by (region, state) (nexrtc_controller_relays)', legend="{{region}} {{state}}"),
    panel("Relayed traffic by direction", f'8 * sum by (direction) (rate(nexrtc_relay_bytes_total[{R}]))', unit="bps", legend="{{direction}}"),
    panel("Active allocations by region", 'sum by (region) (nexrtc_relay_allocations_active)', legend="{{region}}"),
    panel("ICE API requests by status", f'sum by (status) (rate(nexrtc_controller_requests_total{{route="/v1/ice-servers"}}[{R}]))', unit="reqps", legend="{{status}}"),
    panel("ICE API latency", [
        f'histogram_quantile(0.5, sum by (le) (rate(nexrtc_controller_request_duration_seconds_bucket{{route="/v1/ice-servers"}}[{R}])))',
        f'histogram_quantile(0.99, sum by (le) (rate(nexrtc_controller_request_duration_seconds_bucket{{route="/v1/ice-servers"}}[{R}])))',
    ], unit="s", legend=["p50", "p99"]),
    panel("Controller 5xx share", f'(sum(rate(nexrtc_controller_requests_total{{status=~"5.."}}[{R}])) or vector(0)) / sum(rate(nexrtc_controller_requests_total[{R}]))', unit="percentunit",
          desc="5xx answers over all answers; 0 when there are none."),
    panel("Relay CPU by node", f'sum by (region, node) (rate(process_cpu_seconds_total{{{RELAY}}}[{R}]))', unit="percentunit", legend="{{region}}/{{node}}"),
    panel("Region load (share of capacity)", 'max by (region) (nexrtc_controller_region_load)', unit="percentunit", legend="{{region}}",
          desc="Mean load fraction of each region's active relays; NexrtcRegionNearCapacity fires above 0.8."),
])

dashboard("nexrtc-region", "NexRTC region", "One region: its relays, their load and traffic (relay targets carry region and node labels).", [
    panel("Active relays", 'max(nexrtc_controller_relays{region="$region",state="active"})', "stat"),
    panel("Active allocations", 'sum(nexrtc_relay_allocations_active{region="$region"})', "stat"),
    panel("Relay targets up", f'sum(up{{{RELAY},region="$region"}})', "stat"),
    panel("Relay workers alive", 'sum(nexrtc_relay_workers_alive{region="$region"})', "stat"),
    panel("Load (share of capacity)", 'max(nexrtc_controller_region_load{region="$region"})', "stat", unit="percentunit"),
    panel("Relays by state", 'max by (state) (nexrtc_controller_relays{region="$region"})', legend="{{state}}"),
    panel("Allocations by node", 'sum by (node) (nexrtc_relay_allocations_active{region="$region"})', legend="{{node}}"),
    panel("Traffic by node and direction", f'8 * sum by (node, direction) (rate(nexrtc_relay_bytes_total{{region="$region"}}[{R}]))', unit="bps", legend="{{node}} {{direction}}"),
    panel("Packets by node", f'sum by (node) (rate(nexrtc_relay_packets_total{{region="$region"}}[{R}]))', unit="pps", legend="{{node}}"),
    panel("Relay CPU by node", f'sum by (node) (rate(process_cpu_seconds_total{{{RELAY},region="$region"}}[{R}]))', unit="percentunit", legend="{{node}}"),
    panel("Relay memory by node", f'process_resident_memory_bytes{{{RELAY},region="$region"}}', unit="bytes", legend="{{node}}"),
], [var("region", "Region", "label_values(nexrtc_controller_relays, region)")])

dashboard("nexrtc-relay", "NexRTC relay", "One relay process: workers, requests and their latency, drops by reason, authentication failures, system calls per packet, GSO, resources.", [
    panel("Ready", 'nexrtc_relay_ready{instance="$instance"}', "stat"),
    panel("Draining", 'nexrtc_relay_draining{instance="$instance"}', "stat"),
    panel("Workers alive", 'nexrtc_relay_workers_alive{instance="$instance"}', "stat"),
    panel("Certificate expires in", 'nexrtc_relay_tls_certificate_expiry_timestamp_seconds{instance="$instance"} - time()', "stat", unit="s"),
    panel("Allocations, permissions, channels", [
        'sum(nexrtc_relay_allocations_active{instance="$instance"})',
        'nexrtc_relay_permissions_active{instance="$instance"}',
        'nexrtc_relay_channels_active{instance="$instance"}',
    ], legend=["allocations", "permissions", "channels"]),
    panel("Requests by method", f'sum by (method) (rate(nexrtc_relay_requests_total{{instance="$instance"}}[{R}]))', unit="reqps", legend="{{method}}"),
    panel("Request latency p99 by method", f'histogram_quantile(0.99, sum by (le, method) (rate(nexrtc_relay_request_duration_seconds_bucket{{instance="$instance"}}[{R}])))', unit="s", legend="{{method}}",
          desc="From a request reaching its worker to its answer queued (over UDP an Allocate's socket bind included); empty (NaN) without requests."),
    panel("Drops by reason", f'sum by (reason) (rate(nexrtc_relay_dropped_packets_total{{instance="$instance"}}[{R}]))', unit="pps", legend="{{reason}}"),
    panel("Authentication failures by reason", f'sum by (reason) (rate(nexrtc_relay_auth_failures_total{{instance="$instance"}}[{R}]))', unit="reqps", legend="{{reason}}"),
    panel("Error responses by code", f'sum by (code) (rate(nexrtc_relay_error_responses_total{{instance="$instance"}}[{R}]))', unit="reqps", legend="{{code}}"),
    panel("Packets by transport and direction", f'sum by (transport, direction) (rate(nexrtc_relay_packets_total{{instance="$instance"}}[{R}]))', unit="pps", legend="{{transport}} {{direction}}"),
    panel("UDP send system calls per relayed UDP packet", f'sum(rate(nexrtc_relay_udp_send_calls_total{{instance="$instance"}}[{R}])) / sum(rate(nexrtc_relay_packets_total{{instance="$instance",transport="udp"}}[{R}]))',
          desc="Below 1 when sendmmsg batches and GSO coalesce; empty (NaN) without UDP traffic."),
    panel("GSO-coalesced datagrams", f'rate(nexrtc_relay_udp_gso_coalesced_total{{instance="$instance"}}[{R}])', unit="pps"),
    panel("TCP and TLS connections", 'sum by (transport) (nexrtc_relay_tcp_connections_active{instance="$instance"})', legend="{{transport}}"),
    panel("CPU", f'rate(process_cpu_seconds_total{{instance="$instance"}}[{R}])', unit="percentunit"),
    panel("Memory and descriptors", [
        'process_resident_memory_bytes{instance="$instance"}',
        'process_open_fds{instance="$instance"}',
    ], legend=["resident bytes", "open fds"]),
], [var("instance", "Relay", 'label_values(up{job="nexrtc-relay"}, instance)')])

dashboard("nexrtc-tenants", "NexRTC tenants", "Per tenant: relayed traffic, allocations, credentials issued; quota refusals.", [
    panel("Relayed traffic by tenant", f'8 * sum by (tenant, direction) (rate(nexrtc_relay_bytes_total{{tenant=~"$tenant"}}[{R}]))', unit="bps", legend="{{tenant}} {{direction}}"),
    panel("Active allocations by tenant", 'sum by (tenant) (nexrtc_relay_allocations_active{tenant=~"$tenant"})', legend="{{tenant}}"),
    panel("Allocations by tenant and transport", f'sum by (tenant, transport) (rate(nexrtc_relay_allocations_total{{tenant=~"$tenant"}}[{R}]))', unit="reqps", legend="{{tenant}} {{transport}}"),
    panel("Credentials issued by tenant", f'sum by (tenant) (rate(nexrtc_controller_credentials_issued_total{{tenant=~"$tenant"}}[{R}]))', unit="reqps", legend="{{tenant}}"),
    panel("Relayed bytes by tenant, last hour", 'sum by (tenant) (increase(nexrtc_relay_bytes_total{tenant=~"$tenant"}[1h]))', "stat", unit="bytes"),
    panel("Quota and capacity refusals (486, 508), all tenants", f'sum by (code) (rate(nexrtc_relay_error_responses_total{{code=~"486|508"}}[{R}]))', unit="reqps", legend="{{code}}",
          desc="486 Allocation Quota Reached (a tenant's or user's quota), 508 Insufficient Capacity (the relay's)."),
], [var("tenant", "Tenant", "label_values(nexrtc_relay_allocations_total, tenant)", multi=True)])

dashboard("nexrtc-control-plane", "NexRTC control plane", "Controllers and their store: snapshot and store answer age, heartbeats, registrations, lease removals, signaling, DNS.", [
    panel("Snapshot age (max)", 'max(nexrtc_controller_snapshot_age_seconds)', "stat", unit="s"),
    panel("Store answer age (max)", 'max(nexrtc_controller_store_answer_age_seconds)', "stat", unit="s"),
    panel("Signaling rooms", 'sum(nexrtc_controller_signal_rooms)', "stat"),
    panel("Signaling participants", 'sum(nexrtc_controller_signal_participants)', "stat"),
    panel("Store answer age by replica", 'nexrtc_controller_store_answer_age_seconds', unit="s", legend="{{instance}}"),
    panel("Store probes by outcome", f'sum by (outcome) (rate(nexrtc_controller_store_probes_total[{R}]))', legend="{{outcome}}"),
    panel("Heartbeats by outcome", f'sum by (outcome) (rate(nexrtc_controller_heartbeats_total[{R}]))', unit="reqps", legend="{{outcome}}"),
    panel("Registrations by outcome", f'sum by (outcome) (increase(nexrtc_controller_registrations_total[1h]))', legend="{{outcome}}"),
    panel("Relays removed for missed heartbeats (1h)", 'sum(increase(nexrtc_controller_relays_missed_total[1h]))'),
    panel("Signaling messages by type", f'sum by (type) (rate(nexrtc_controller_signal_messages_total[{R}]))', unit="reqps", legend="{{type}}"),
    panel("Signaling errors by code", f'sum by (code) (rate(nexrtc_controller_signal_errors_total[{R}]))', unit="reqps", legend="{{code}}"),
    panel("DNS queries by rcode", f'sum by (rcode) (rate(nexrtc_controller_dns_queries_total[{R}]))', unit="reqps", legend="{{rcode}}"),
    panel("HTTP connections by replica", 'nexrtc_controller_http_connections', legend="{{instance}}"),
    panel("Controller CPU by replica", f'rate(process_cpu_seconds_total{{{CTRL}}}[{R}])', unit="percentunit", legend="{{instance}}"),
    panel("Controller memory by replica", f'process_resident_memory_bytes{{{CTRL}}}', unit="bytes", legend="{{instance}}"),
    panel("Controller open fds by replica", f'process_open_fds{{{CTRL}}}', legend="{{instance}}"),
])
