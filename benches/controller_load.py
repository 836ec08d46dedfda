#!/usr/bin/env python3
"""Load run of the controller's ICE-config API, side by side with the machine's
HTTP limit in the same run.

Starts `nexrtc controller` (release build, embedded store) on loopback with 200
regions and 5,000 registered relays, then drives with wrk (Debian package wrk):
  1. GET /healthz           -- the trivial handler: this machine's HTTP limit
  2. POST /v1/ice-servers   -- API key, random client_ip from the synthetic GeoIP
                               database, so every request does GeoIP + ranking +
                               credential minting
Both runs use the same wrk settings, bounded in time. Writes the "Controller"
section of benches/RESULTS.md. Usage: python3 benches/controller_load.py
[--duration 15] [--connections 64]. Traffic goes to 127.0.0.1 only.
"""

import argparse
import http.client
import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGIONS = 200
RELAYS = 5000


def key():
    return "nxk_" + secrets.token_urlsafe(32)


def regions():
    """200 regions on a deterministic grid of the inhabited latitudes."""
    out = []
    for i in range(REGIONS):
        lat = -45 + (i % 20) * 5.5
        lon = -175 + (i // 20) * 35 + (i % 7)
        out.append((f"region-{i:03d}", round(lat, 2), round(lon, 2)))
    return out


def write_config(path, port, admin, node, ice):
    lines = [
        f'listen = "127.0.0.1:{port}"',
        "lease_ttl_secs = 600",
        f'geoip_db = "{ROOT}/geo/testdata/synthetic-city.mmdb"',
        'default_region = "region-000"',
        "",
        "[rate_limit]",
        "per_second = 100000000.0",
        "burst = 100000000",
        "",
        "[bootstrap]",
        f'admin_key = "{admin}"',
        f'node_key = "{node}"',
        f'ice_key = "{ice}"',
        'tenant = "bench"',
        f'tenant_secret = "{secrets.token_hex(16)}"',
    ]
    for name, lat, lon in regions():
        lines += ["", "[[bootstrap.regions]]", f'name = "{name}"', f"lat = {lat}", f"lon = {lon}"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def wait_ready(port, proc, limit=60):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("controller exited during start-up")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("controller not ready")


def register(port, node_key):
    """Registers the relays from 32 threads: a registration is answered once the
    relay is visible in this replica's view (rebuilt at most every 50 ms), so
    one client registering in sequence would measure that wait, not the server."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda part: register_part(port, node_key, part), range(32)))


def register_part(port, node_key, part):
    rng = random.Random(part)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    names = [r[0] for r in regions()]
    for i in range(part, RELAYS, 32):
        region = names[i % REGIONS]
        host = f"198.18.{i // 250}.{i % 250 + 1}"
        body = json.dumps({
            "node": f"relay-{i:04d}",
            "region": region,
            "addresses": {
                "udp": {"host": host, "port": 3478},
                "tcp": {"host": host, "port": 3478},
                "tls": {"host": host, "port": 5349},
            },
            "transports": ["udp", "tcp", "tls"],
            "load": {"allocations": rng.randrange(0, 900), "capacity": 1000, "pps_in": 0,
                     "pps_out": 0, "bps_in": 0, "bps_out": 0, "cpu": rng.random() * 0.8},
            "state": "active",
            "version": "bench",
        })
        c.request("POST", "/v1/relays/register", body,
                  {"Authorization": f"Bearer {node_key}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        if r.status != 201:
            raise SystemExit(f"registration {i} failed: {r.status}")


def ice_once(port, ice):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("POST", "/v1/ice-servers", json.dumps({"client_ip": "198.51.100.7"}),
              {"Authorization": f"Bearer {ice}", "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"{}")


LUA = r"""
local ips = {"198.51.100.7", "198.51.100.200", "203.0.113.9", "203.0.113.200",
             "192.0.2.55", "198.18.3.4", "8.8.8.8"}
local key = "%s"
local n = 0
request = function()
  n = n + 1
  local body = '{"ttl": 3600, "user": "u' .. n .. '", "client_ip": "' .. ips[(n %% #ips) + 1] .. '"}'
  return wrk.format("POST", "/v1/ice-servers",
    {["Authorization"] = "Bearer " .. key, ["Content-Type"] = "application/json"}, body)
end
response = function(status, headers, body)
  if status ~= 201 then errors = (errors or 0) + 1 end
end
"""


def wrk(port, path, duration, connections, script=None):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", script]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        lat[pct] = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"cmd": " ".join(cmd), "rps": rps, "p50": lat["50"], "p99": lat["99"],
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(0) if errors else "none"}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "-p", "nexrtc"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "nexrtc")
    port = free_port()
    admin, node, ice = key(), key(), key()
    work = tempfile.mkdtemp(prefix="nexrtc-bench-")
    config = os.path.join(work, "controller.toml")
    write_config(config, port, admin, node, ice)
    log = open(os.path.join(work, "controller.log"), "w")
    proc = subprocess.Popen([binary, "controller", "--config", config], stdout=log, stderr=log)
    try:
        wait_ready(port, proc)
        t = time.time()
        register(port, node)
        reg_secs = time.time() - t
        print(f"registered {RELAYS} relays in {REGIONS} regions in {reg_secs:.1f} s")
        time.sleep(0.5)
        status, answer = ice_once(port, ice)
        assert status == 201, (status, answer)
        print("sample answer regions:", answer.get("regions"))
        script = os.path.join(work, "ice.lua")
        with open(script, "w") as f:
            f.write(LUA % ice)
        c0 = cpu_seconds(proc.pid)
        base = wrk(port, "/healthz", args.duration, args.connections)
        c1 = cpu_seconds(proc.pid)
        ice_run = wrk(port, "/v1/ice-servers", args.duration, args.connections, script)
        c2 = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    base["cpu"] = c1 - c0
    ice_run["cpu"] = c2 - c1
    for r in (base, ice_run):
        r["per_cpu_s"] = r["rps"] * args.duration / r["cpu"] if r["cpu"] else float("nan")
    write_results(args, base, ice_run, answer, reg_secs)


def write_results(args, base, ice_run, answer, reg_secs):
    uname = os.uname()
    section = f"""<!-- controller:begin (written by benches/controller_load.py) -->
## Controller: `POST /v1/ice-servers`

Command: `python3 benches/controller_load.py --duration {args.duration} --connections {args.connections}`
Machine: {os.cpu_count()} CPUs, kernel {uname.release}, {time.strftime('%Y-%m-%d')}.
Setup: release build, embedded store, {REGIONS} regions, {RELAYS} registered relays, synthetic
GeoIP database; each request carries a `client_ip` (GeoIP lookup), ranks regions and relays,
and mints TURN REST credentials. wrk (2 threads, {args.connections} connections) runs on the
same 2 cores as the controller, so both figures are lower than on separate machines.
Baseline: `GET /healthz` on the same server, same wrk settings, in the same run.

| run | requests/s | p50 | p99 | non-2xx | controller CPU-s | requests per controller CPU-s |
|---|---|---|---|---|---|---|
| `GET /healthz` (HTTP limit) | {base['rps']:,.0f} | {base['p50']:.2f} ms | {base['p99']:.2f} ms | {base['non2xx']} | {base['cpu']:.1f} | {base['per_cpu_s']:,.0f} |
| `POST /v1/ice-servers` | {ice_run['rps']:,.0f} | {ice_run['p50']:.2f} ms | {ice_run['p99']:.2f} ms | {ice_run['non2xx']} | {ice_run['cpu']:.1f} | {ice_run['per_cpu_s']:,.0f} |

Ratio ICE / HTTP limit: {ice_run['rps'] / base['rps']:.2f} (requests/s), {ice_run['per_cpu_s'] / base['per_cpu_s']:.2f} (per CPU-second).
Target (issue 3): ≥ 20,000 requests/s with p99 < 10 ms: **{'met' if ice_run['rps'] >= 20000 and ice_run['p99'] < 10 else 'not met'}**.
Socket errors: healthz {base['socket_errors']}; ice {ice_run['socket_errors']}.
Sample answer regions: {answer.get('regions')}.
Registering the {RELAYS} relays from 32 concurrent clients took {reg_secs:.1f} s ({RELAYS / reg_secs:,.0f}/s);
each registration is answered once the relay is visible in the replica's view (rebuilt at
most every 50 ms), so one registration takes up to ~50 ms however idle the server is.

wrk commands: `{base['cmd']}`; `{ice_run['cmd']}` (Lua script in the harness).
<!-- controller:end -->
"""
    write_section("controller", section)
    print(section)


if __name__ == "__main__":
    main()
