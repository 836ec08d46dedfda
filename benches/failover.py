#!/usr/bin/env python3
"""Failover timing of the relay network (issue 4): how long a relay killed with
SIGKILL stays in the ICE answers, and how long a new relay takes to enter them.

Everything is a real process on loopback (127.0.0.1 only): Debian's etcd
(/usr/bin/etcd, free ports, temporary data directory), one `nexrtc controller`
(release build) on that etcd, and two `nexrtc relay` processes with their
in-process edge agent, one per region: a victim in eu-west and a survivor in
eu-central (both are in every answer: best region plus a second region).

Each trial: wait a random fraction of a heartbeat interval (so the kill lands
at a random point of the heartbeat cycle), kill -9 the victim, poll
POST /v1/ice-servers every 20 ms until the victim's port is gone from the
answer (detection time, from the kill); then start a replacement relay (new
ports, same node name: a restart) and poll until its port appears (appearance
time, from the spawn and from the moment its /readyz answers 200).

Runs two configurations, each with a fresh etcd and controller:
  * the defaults: lease_ttl_secs = 5, heartbeat_interval_ms = 1000 and
    relay_miss_after_ms = 2000 (missed-heartbeat removal, controller/src/liveness.rs);
  * the same lease with relay_miss_after_ms = 5000, which leaves detection to the
    lease's expiry alone: the backstop when the renewing replica dies too.
Writes the "Failover" section of benches/RESULTS.md (between the failover
markers, replacing an earlier one, other sections untouched).

Usage: python3 benches/failover.py [--trials 20] [--no-build]
Every wait is bounded; every process is killed at the end (also on errors).
"""

import argparse
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEXRTC = os.path.join(ROOT, "target", "release", "nexrtc")
ETCD = "/usr/bin/etcd"
POLL = 0.020  # seconds between ICE polls
CONFIGS = [  # (lease_ttl_secs, heartbeat_interval_ms, relay_miss_after_ms)
    (5, 1000, 2000),
    (5, 1000, 5000),
]
TARGET_S = 3.0

PROCS = []  # every process started, killed in `finally`


def key():
    return "nxk_" + secrets.token_urlsafe(32)


def spawn(args, log_path, env=None):
    log = open(log_path, "ab")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=env)
    log.close()
    PROCS.append(proc)
    return proc


def kill(proc):
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def http_status(port, path, timeout=1.0):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return None


def wait_until(what, limit, check, proc=None, log=None):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what}: process exited ({proc.returncode}); log: {log}")
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"{what}: not within {limit} s; log: {log}")


class Etcd:
    def __init__(self, tmp):
        self.client = free_port()
        self.peer = free_port()
        data = os.path.join(tmp, "etcd-data")
        self.log = os.path.join(tmp, "etcd.log")
        client = f"http://127.0.0.1:{self.client}"
        peer = f"http://127.0.0.1:{self.peer}"
        self.proc = spawn([
            ETCD, "--name", "default", "--data-dir", data,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
            "--log-level", "warn",
        ], self.log)
        wait_until("etcd ready", 30, lambda: http_status(self.client, "/health") == 200,
                   self.proc, self.log)

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.client}"


class Controller:
    def __init__(self, tmp, etcd, ttl, heartbeat_ms, miss_ms):
        self.port = free_port()
        self.admin, self.node, self.ice = key(), key(), key()
        self.config = os.path.join(tmp, "controller.toml")
        self.log = os.path.join(tmp, "controller.log")
        with open(self.config, "w") as f:
            f.write(f"""listen = "127.0.0.1:{self.port}"
etcd_endpoints = ["{etcd.endpoint}"]
lease_ttl_secs = {ttl}
heartbeat_interval_ms = {heartbeat_ms}
relay_miss_after_ms = {miss_ms}

[rate_limit]
per_second = 100000.0
burst = 100000

[bootstrap]
admin_key = "{self.admin}"
node_key = "{self.node}"
ice_key = "{self.ice}"
tenant = "bench"
tenant_secret = "{secrets.token_hex(16)}"

[[bootstrap.regions]]
name = "eu-west"
lat = 53.35
lon = -6.26

[[bootstrap.regions]]
name = "eu-central"
lat = 50.11
lon = 8.68
""")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = spawn([NEXRTC, "controller", "--config", self.config], self.log, env)
        wait_until("controller ready", 60,
                   lambda: http_status(self.port, "/readyz") == 200, self.proc, self.log)
        self.conn = None

    def ice_ports(self):
        """The relay ports in one ICE answer (`None` when the request failed)."""
        body = json.dumps({"ttl": 600, "user": "bench"})
        headers = {"Authorization": f"Bearer {self.ice}", "Content-Type": "application/json"}
        for _ in range(2):  # one retry on a fresh connection
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                self.conn.request("POST", "/v1/ice-servers", body, headers)
                r = self.conn.getresponse()
                text = r.read()
                if r.status != 201:
                    return None
                answer = json.loads(text)
                ports = set()
                for server in answer.get("iceServers", []):
                    for url in server.get("urls", []):
                        m = re.search(r"127\.0\.0\.1:(\d+)", url)
                        if m:
                            ports.add(int(m.group(1)))
                return ports
            except (OSError, http.client.HTTPException, ValueError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        return None


class Relay:
    def __init__(self, tmp, controller, region, node, slot):
        self.port = free_port()
        self.tls_port = free_port()
        self.metrics_port = free_port()
        self.log = os.path.join(tmp, f"relay-{node}-{slot}.log")
        min_port = 40000 + slot * 20
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.started = time.monotonic()
        self.proc = spawn([
            NEXRTC, "relay",
            "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
            "--listening-port", str(self.port), "--tls-listening-port", str(self.tls_port),
            "--min-port", str(min_port), "--max-port", str(min_port + 19),
            "--realm", "bench.test", "--static-auth-secret", secrets.token_hex(8),
            "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            "--controller", f"http://127.0.0.1:{controller.port}",
            "--node-token", controller.node,
            "--region", region, "--node", node,
            "--probe-interval", "0",
        ], self.log, env)

    def ready(self):
        return http_status(self.metrics_port, "/readyz", timeout=0.5) == 200


def poll_until(controller, limit, pred, relay=None):
    """Polls the ICE API every POLL s until `pred(ports)`; returns (elapsed since the
    call, seconds after which `relay` answered /readyz or None)."""
    start = time.monotonic()
    ready_at = None
    for _ in range(int(limit / POLL) + 1):
        now = time.monotonic()
        if now - start > limit:
            break
        if relay is not None:
            if relay.proc.poll() is not None:
                raise SystemExit(f"relay exited ({relay.proc.returncode}); log: {relay.log}")
            if ready_at is None and relay.ready():
                ready_at = time.monotonic()
        ports = controller.ice_ports()
        if ports is not None and pred(ports):
            return time.monotonic(), ready_at
        time.sleep(max(0.0, POLL - (time.monotonic() - now)))
    raise SystemExit(f"not within {limit} s")


def summary(values):
    return min(values), statistics.median(values), max(values)


def run_config(ttl, heartbeat_ms, miss_ms, trials, tmp_root):
    tmp = tempfile.mkdtemp(prefix=f"miss{miss_ms}-", dir=tmp_root)
    etcd = Etcd(tmp)
    controller = Controller(tmp, etcd, ttl, heartbeat_ms, miss_ms)
    slot = 0
    survivor = Relay(tmp, controller, "eu-central", "survivor", slot)
    slot += 1
    victim = Relay(tmp, controller, "eu-west", "victim", slot)
    poll_until(controller, 30, lambda p: survivor.port in p and victim.port in p)
    detections, appear_spawn, appear_ready, survivor_missing = [], [], [], 0
    rng = random.Random(miss_ms)
    try:
        for trial in range(trials):
            # Land the kill at a random point of the heartbeat cycle.
            time.sleep(0.5 + rng.random() * heartbeat_ms / 1000)
            gone = victim.port
            victim.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            victim.proc.wait(timeout=10)
            seen, _ = poll_until(controller, ttl + 10, lambda p: gone not in p)
            detections.append(seen - killed)
            ports = controller.ice_ports() or set()
            if survivor.port not in ports:
                survivor_missing += 1
            slot += 1
            victim = Relay(tmp, controller, "eu-west", "victim", slot)
            seen, ready_at = poll_until(controller, 30, lambda p: victim.port in p, victim)
            appear_spawn.append(seen - victim.started)
            if ready_at is not None:
                appear_ready.append(max(0.0, seen - ready_at))
            print(f"ttl {ttl} s, heartbeat {heartbeat_ms} ms, miss after {miss_ms} ms, trial {trial + 1}/{trials}: "
                  f"gone after {detections[-1]:.3f} s, replacement offered "
                  f"{appear_spawn[-1]:.3f} s after spawn", flush=True)
    finally:
        for p in (victim.proc, survivor.proc, controller.proc, etcd.proc):
            kill(p)
    return {
        "ttl": ttl, "heartbeat_ms": heartbeat_ms, "miss_ms": miss_ms, "trials": trials,
        "detect": summary(detections), "spawn": summary(appear_spawn),
        "ready": summary(appear_ready) if appear_ready else None,
        "ready_n": len(appear_ready), "survivor_missing": survivor_missing,
        "detections": detections,
    }


def fmt(triple):
    return " / ".join(f"{v:.2f} s" for v in triple)


def write_results(args, results):
    uname = os.uname()
    rows = []
    for r in results:
        d = r["detect"]
        rows.append(
            f"| {r['ttl']} s | {r['heartbeat_ms']} ms | {r['miss_ms']} ms | {r['trials']} | "
            f"{fmt(d)} | {'yes' if d[2] <= r['ttl'] + 1 else 'no'} | "
            f"{'**met**' if d[2] <= TARGET_S else '**not met**'} | {fmt(r['spawn'])} | "
            f"{fmt(r['ready']) if r['ready'] else 'n/a'} |")
    default = results[0]
    backstop = results[1] if len(results) > 1 else None

    def window(r):
        # Kill lands 0..heartbeat after the last renewal; removal follows the last renewal
        # by `miss` (liveness) or by the TTL plus etcd's 500 ms expiry tick (lease alone).
        hb = r["heartbeat_ms"] / 1000
        if r["miss_ms"] < r["ttl"] * 1000:
            miss = r["miss_ms"] / 1000
            return f"{miss - hb:.1f}–{miss + 0.3:.2f} s"
        return f"{r['ttl'] - hb:.1f}–{r['ttl'] + 0.55:.2f} s"

    verdict = "meets" if default["detect"][2] <= TARGET_S else "does not meet"
    within = [r for r in results if r["detect"][2] <= r["ttl"] + 1]
    bound_text = ("Every configuration met the issue's whole-system bound (max detection ≤ TTL + 1 s)."
                  if len(within) == len(results) else
                  "The issue's whole-system bound (max detection ≤ TTL + 1 s) was missed where "
                  "the column says no.")
    backstop_text = ""
    if backstop:
        backstop_text = (
            f"With removal left to the lease alone (`relay_miss_after_ms = {backstop['miss_ms']}`, "
            f"what happens when the replica that renewed a relay's lease dies with it) the "
            f"expected window is {window(backstop)} and the worst detection was "
            f"{backstop['detect'][2]:.2f} s.")
    section = f"""<!-- failover:begin (written by benches/failover.py) -->
## Failover: a killed relay leaves the ICE answers, a new one enters

Command: `python3 benches/failover.py --trials {args.trials}`
Machine: {os.cpu_count()} CPUs, kernel {uname.release}, {time.strftime('%Y-%m-%d')}.
Setup: everything on 127.0.0.1: Debian etcd {etcd_version()} (single member, default
settings), one `nexrtc controller` (release build) on it, two `nexrtc relay` processes with
the in-process edge agent (a victim in eu-west, a survivor in eu-central). Each trial waits a
random fraction of a heartbeat interval, kills the victim with SIGKILL, and polls
`POST /v1/ice-servers` every {POLL * 1000:.0f} ms until the victim's port is gone
(**detection**, from the kill); then starts a replacement (same node name, new ports) and
polls until it is offered (**appearance**, from its spawn, and from when its `/readyz`
first answered 200). Figures are min / median / max.

| lease TTL | heartbeat | removed after | trials | detection | max ≤ TTL + 1 s | target max ≤ 3 s | appearance from spawn | appearance from relay ready |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

**Defaults** (lease TTL {default['ttl']} s, heartbeat {default['heartbeat_ms']} ms): the replica
that last renewed a relay's lease removes it once nobody has renewed it for
`relay_miss_after` ({default['miss_ms']} ms, two heartbeats; `controller/src/liveness.rs`),
checking every 250 ms and confirming with etcd's lease time-to-live that no other replica
renewed it. Expected window {window(default)} after the kill; the worst detection measured
was {default['detect'][2]:.2f} s: the default configuration {verdict} the 3 s target on this
machine. {backstop_text}
{bound_text} Missed-heartbeat removal adds one etcd read (lease time-to-live) and one lease
revocation per relay that stops, nothing per heartbeat. A relay whose heartbeats are delayed
by more than {default['miss_ms']} ms (a pause, a network hiccup) leaves the answers and
registers again on its next heartbeat.
The survivor was missing from {sum(r['survivor_missing'] for r in results)} of the answers read right after a detection.

Detections (s), defaults: {', '.join(f'{v:.2f}' for v in default['detections'])}.
{('Detections (s), lease alone: ' + ', '.join(f'{v:.2f}' for v in backstop['detections']) + '.') if backstop else ''}
<!-- failover:end -->
"""
    write_section("failover", section)
    print(section)


def etcd_version():
    try:
        out = subprocess.run([ETCD, "--version"], capture_output=True, text=True, timeout=10)
        m = re.search(r"etcd Version: (\S+)", out.stdout)
        return m.group(1) if m else "(version unknown)"
    except (OSError, subprocess.TimeoutExpired):
        return "(version unknown)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--no-build", action="store_true",
                        help="use target/release/nexrtc as it is")
    args = parser.parse_args()
    if args.trials < 1 or args.trials > 1000:
        raise SystemExit("--trials must be 1..1000")
    if not os.path.exists(ETCD):
        raise SystemExit(f"{ETCD} not found (apt-get install etcd-server)")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "nexrtc"], cwd=ROOT, check=True)
    if not os.path.exists(NEXRTC):
        raise SystemExit(f"{NEXRTC} not found: cargo build --release -p nexrtc")
    tmp_root = tempfile.mkdtemp(prefix="nexrtc-failover-")
    results = []
    try:
        for ttl, heartbeat_ms, miss_ms in CONFIGS:
            results.append(run_config(ttl, heartbeat_ms, miss_ms, args.trials, tmp_root))
    finally:
        for p in PROCS:
            kill(p)
        if results and len(results) == len(CONFIGS):
            shutil.rmtree(tmp_root, ignore_errors=True)
        else:
            print(f"logs kept in {tmp_root}", file=sys.stderr)
    write_results(args, results)


if __name__ == "__main__":
    main()
