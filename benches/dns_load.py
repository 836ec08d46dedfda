#!/usr/bin/env python3
"""GeoDNS benchmark (issue 13): the controller's DNS server beside gdnsd with its geoip
plugin, the same zone and the same query mix, in one run on this machine.

Servers (each started fresh, pinned to CPU 1; dnsperf pinned to CPU 0):
  * `nexrtc controller` with `dns_zone = "example.org"` (embedded store, the synthetic
    GeoIP database, four regions with one relay each; the DNS rate limit off, as gdnsd has
    none), answering `turn.example.org` from its ranking;
  * gdnsd 3 (Debian) with plugin_geoip: the same four datacenters at the same coordinates
    (`auto_dc_coords`, nearest first, two per answer as our ranking gives), the same
    GeoIP2 database, `turn` a DYNA resource, one UDP thread.
Load: dnsperf, `turn.example.org A`, 4 clients, 100 queries outstanding, over UDP; once
without EDNS Client Subnet (the resolver's address places the client), once with ECS
203.0.113.0/24 (Tokyo in the synthetic database), and once with the name in 20,000
random-case spellings (0x20, as resolvers send it). Per run: queries per second, the
server's CPU time over the run (/proc/<pid>/stat), queries per server CPU-second.

Writes the "dns" section of benches/RESULTS.md.
Usage: python3 benches/dns_load.py [--quick] [--no-build] [--no-write] [--repeat N]
Traffic goes to 127.0.0.1 only; every run is bounded in time.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import free_port, stop_process, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")
NEXRTC = os.path.join(REL, "nexrtc")
MMDB = os.path.join(ROOT, "geo", "testdata", "synthetic-city.mmdb")
NODE_KEY = "nxk_" + "n" * 40
REGIONS = [
    ("eu-west", 53.35, -6.26, "198.18.0.1"),
    ("eu-central", 50.11, 8.68, "198.18.1.1"),
    ("us-east", 39.04, -77.49, "198.18.2.1"),
    ("ap-northeast", 35.68, 139.69, "198.18.3.1"),
]
# ECS option (code 8): family 1, source /24, scope 0, 203.0.113 (Tokyo).
ECS_TOKYO = "8:00011800cb0071"
# Random-case spellings of the name in the 0x20 query shape.
CASE_VARIANTS = 20_000
SHAPES = ["one name, no ECS", "one name, ECS 203.0.113.0/24", "0x20 case, no ECS"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(cpus):
    return lambda: os.sched_setaffinity(0, cpus)


def answers(port):
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+short", "+time=1", "+tries=1",
                          "turn.example.org", "A"], capture_output=True, text=True, timeout=10)
    return out.stdout.split()


class Server:
    def __init__(self, kind, tmp):
        self.kind = kind
        self.port = free_port()
        self.log = open(os.path.join(tmp, f"{kind}-{self.port}.log"), "w")
        if kind == "nexrtc":
            self.start_ours(tmp)
        else:
            self.start_gdnsd(tmp)
        deadline = time.time() + 30
        while not answers(self.port):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"{kind} did not answer: {open(self.log.name).read()[-2000:]}")
            time.sleep(0.2)

    def start_ours(self, tmp):
        http = free_port()
        conf = os.path.join(tmp, f"controller-{self.port}.toml")
        lines = [
            f'listen = "127.0.0.1:{http}"', f'geoip_db = "{MMDB}"',
            "lease_ttl_secs = 3600", "heartbeat_interval_ms = 1000",
            "relay_miss_after_ms = 3600000",
            f'dns_listen = "127.0.0.1:{self.port}"', 'dns_zone = "example.org"',
            "dns_rate_limit = 0.0", "[bootstrap]", f'node_key = "{NODE_KEY}"',
        ]
        for name, lat, lon, _ in REGIONS:
            lines += ["[[bootstrap.regions]]", f'name = "{name}"', f"lat = {lat}", f"lon = {lon}"]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.cmd = [NEXRTC, "controller", "--config", conf]
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=pinned({1}), env=dict(os.environ, RUST_LOG="warn"))
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=1)
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("controller not ready")
                time.sleep(0.2)
        for name, _, _, ip in REGIONS:
            ep = {"host": ip, "port": 3478}
            body = {"node": "n1", "region": name, "addresses": {"udp": ep, "tcp": ep},
                    "transports": ["udp", "tcp"], "version": "bench",
                    "load": {"allocations": 0, "capacity": 1000, "cpu": 0.0}}
            req = urllib.request.Request(f"http://127.0.0.1:{http}/v1/relays/register",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"authorization": f"Bearer {NODE_KEY}",
                                                  "content-type": "application/json"})
            urllib.request.urlopen(req, timeout=5)

    def start_gdnsd(self, tmp):
        conf = tempfile.mkdtemp(prefix="gdnsd-", dir=tmp)
        os.makedirs(os.path.join(conf, "zones"))
        os.makedirs(os.path.join(conf, "geoip"))
        shutil.copy(MMDB, os.path.join(conf, "geoip", "city.mmdb"))
        coords = "\n".join(f"          {n} => [ {lat}, {lon} ]" for n, lat, lon, _ in REGIONS)
        dcmap = "\n".join(f"          {n} => {ip}" for n, _, _, ip in REGIONS)
        names = ", ".join(n for n, _, _, _ in REGIONS)
        with open(os.path.join(conf, "config"), "w") as f:
            f.write(f"""options => {{
  listen => {{ 127.0.0.1:{self.port} => {{ udp_threads => 1, tcp_threads => 1 }} }}
  edns_client_subnet => true
  zones_default_ttl => 30
}}
plugins => {{
  geoip => {{
    maps => {{
      relays => {{
        geoip2_db => city.mmdb
        datacenters => [ {names} ]
        auto_dc_coords => {{
{coords}
        }}
        auto_dc_limit => 2
      }}
    }}
    resources => {{
      turn => {{
        map => relays
        dcmap => {{
{dcmap}
        }}
      }}
    }}
  }}
}}
""")
        with open(os.path.join(conf, "zones", "example.org"), "w") as f:
            f.write("@ SOA ns1 hostmaster 1 3600 600 86400 30\n@ NS ns1\nns1 A 127.0.0.1\n"
                    "turn 30 DYNA geoip!turn\n")
        self.cmd = ["gdnsd", "-c", conf, "-l", "start"]
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=pinned({1}))

    def stop(self):
        stop_process(self.proc, self.log)


def dnsperf(server, seconds, ecs, data):
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(server.port), "-d", data, "-l", str(seconds),
           "-c", "4", "-q", "100"]
    if ecs:
        cmd += ["-E", ECS_TOKYO]
    before = cpu_secs(server.proc.pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                         preexec_fn=pinned({0}))
    cpu = cpu_secs(server.proc.pid) - before
    text = out.stdout
    def field(pattern):
        m = re.search(pattern, text)
        return float(m.group(1).replace(",", "")) if m else None
    qps = field(r"Queries per second:\s+([\d.,]+)")
    completed = field(r"Queries completed:\s+([\d,]+)")
    lost = field(r"Queries lost:\s+([\d,]+)")
    latency = field(r"Average Latency \(s\):\s+([\d.]+)")
    return {"qps": qps, "completed": completed, "lost": lost, "cpu": cpu,
            "per_cpu": completed / cpu if completed and cpu else None,
            "latency_us": latency * 1e6 if latency is not None else None,
            "cmd": " ".join(cmd[:1] + cmd[1:])}


GROUPS = [
    ("kernel (UDP receive and send, wakeups)", lambda sym, dso: "kernel" in dso),
    ("allocator (malloc/free/memmove in libc)", lambda sym, dso: "libc" in dso),
    ("hickory-server and hickory-proto (request tasks, parsing, encoding)",
     lambda sym, dso: "hickory" in sym),
    ("tokio and futures (task spawn, wakeups, channels)",
     lambda sym, dso: "tokio" in sym or "futures" in sym or "join_set" in sym.lower()),
    ("our answer (zone, ranking, GeoIP, metrics)",
     lambda sym, dso: any(k in sym for k in ("nexrtc", "maxminddb", "metrics", "Parser"))),
]


def profile(server, seconds, data, tmp):
    """perf profile of our server under the load, grouped (where the time goes)."""
    if not shutil.which("perf"):
        return None
    out = os.path.join(tmp, "dns.perf")
    rec = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "-p",
                            str(server.proc.pid), "-o", out, "--", "sleep", str(seconds)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.2)
    dnsperf(server, seconds, False, data)
    rec.wait(timeout=seconds + 30)
    rep = subprocess.run(["perf", "report", "-i", out, "--stdio", "--no-children",
                          "--sort", "dso,symbol", "--percent-limit", "0"],
                         capture_output=True, text=True, timeout=120).stdout
    shares = {name: 0.0 for name, _ in GROUPS}
    shares["other"] = 0.0
    top = []
    for line in rep.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        if len(top) < 12:
            top.append(f"{pct:5.2f}%  {dso:18} {sym[:100]}")
        name = next((n for n, test in GROUPS if test(sym, dso)), "other")
        shares[name] += pct
    return shares, top


def median_run(runs):
    ordered = sorted(runs, key=lambda r: r["per_cpu"] or 0)
    pick = dict(ordered[(len(ordered) - 1) // 2])
    pick["range"] = (ordered[0]["per_cpu"], ordered[-1]["per_cpu"])
    return pick


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--repeat", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="add a perf profile of our server under load (where the time goes)")
    args = parser.parse_args()
    for tool in ("gdnsd", "dnsperf", "dig"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: apt-get install gdnsd dnsperf bind9-dnsutils")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "nexrtc"], cwd=ROOT, check=True)
    seconds = 3 if args.quick else 8
    repeat = args.repeat or (1 if args.quick else 3)
    started = time.time()
    load_start = open("/proc/loadavg").read().split()[:3]
    runs = {}
    answers_seen = {}
    commands = {}
    with tempfile.TemporaryDirectory(prefix="nexrtc-dnsbench-") as tmp:
        data = os.path.join(tmp, "queries.txt")
        with open(data, "w") as f:
            f.write("turn.example.org A\n")
        # Resolvers randomize the case of each name they ask (0x20): the same question
        # arrives as ever other bytes.
        mixed = os.path.join(tmp, "queries-0x20.txt")
        rng = random.Random(20)
        with open(mixed, "w") as f:
            for _ in range(CASE_VARIANTS):
                name = "".join(c.upper() if rng.random() < 0.5 else c for c in "turn.example.org")
                f.write(f"{name} A\n")
        shapes = [(SHAPES[0], False, data), (SHAPES[1], True, data), (SHAPES[2], False, mixed)]
        for rep in range(repeat):
            for kind in ("nexrtc", "gdnsd"):
                log(f"round {rep + 1}/{repeat}: {kind}")
                server = Server(kind, tmp)
                try:
                    answers_seen[kind] = answers(server.port)
                    commands[kind] = " ".join(server.cmd)
                    for shape, ecs, queries in shapes:
                        runs.setdefault((kind, shape), []).append(
                            dnsperf(server, seconds, ecs, queries))
                finally:
                    server.stop()
        profiled = None
        if args.profile:
            log("profile of our server")
            server = Server("nexrtc", tmp)
            try:
                profiled = profile(server, seconds, data, tmp)
            finally:
                server.stop()
    elapsed = time.time() - started
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "gdnsd"], capture_output=True,
                             text=True).stdout
    rev = subprocess.run(["git", "-C", ROOT, "log", "-1", "--format=%h %s"], capture_output=True,
                         text=True).stdout.strip()
    out = ["<!-- dns:begin (written by benches/dns_load.py) -->",
           "## GeoDNS: the controller's DNS server vs gdnsd", ""]
    out.append(f"Command: `python3 benches/dns_load.py{' --quick' if args.quick else ''}`  ")
    out.append(f"Machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
               f"{' '.join(load_start)} at the start. Run took {elapsed:.0f} s. Our controller: "
               f"commit `{rev}`. gdnsd {version} (Debian), plugin_geoip.")
    out.append("")
    out.append(f"Each server pinned to CPU 1, dnsperf to CPU 0; `turn.example.org A` over UDP, "
               f"4 clients, 100 outstanding, {seconds} s per run, {repeat} run(s) each, servers "
               f"alternating; the row is the run with the median queries per server CPU-second "
               f"(range in brackets). Both answer from the same GeoIP2 database with the four "
               f"regions at the same coordinates, nearest two first (ours: the ICE API's "
               f"ranking; gdnsd: `auto_dc_coords` with `auto_dc_limit = 2`, which orders the failover "
               f"chain: a DYNA resource answers with its first healthy datacenter only, so "
               f"gdnsd's answers hold one address where ours hold two). Our DNS rate "
               f"limit is off for the run (all queries come from one address; gdnsd has "
               f"none). Answers seen: ours {answers_seen.get('nexrtc')}, gdnsd "
               f"{answers_seen.get('gdnsd')} (loopback resolver, no ECS).")
    out.append("")
    out.append(f"Query shapes: `turn.example.org A` without ECS, the same with ECS "
               f"203.0.113.0/24, and the name in {CASE_VARIANTS:,} random-case spellings (0x20, as "
               f"resolvers send it), without ECS.")
    out.append("")
    out.append("| server | queries | queries/s | lost | server CPU-s | queries per CPU-s (min–max) | "
               "CPU µs per query | avg latency µs |")
    out.append("|---|---|---|---|---|---|---|---|")
    picked = {}
    for (kind, shape), rs in sorted(runs.items(), key=lambda kv: (kv[0][0], SHAPES.index(kv[0][1]))):
        r = median_run(rs)
        picked[(kind, shape)] = r
        rng = f" ({r['range'][0]:,.0f}–{r['range'][1]:,.0f})" if len(rs) > 1 else ""
        out.append(f"| {'nexrtc controller' if kind == 'nexrtc' else 'gdnsd'} | "
                   f"{shape} | {r['qps']:,.0f} | {r['lost']:,.0f} | "
                   f"{r['cpu']:.2f} | {r['per_cpu']:,.0f}{rng} | {1e6 / r['per_cpu']:.1f} | "
                   f"{r['latency_us']:,.0f} |")
    out.append("")
    for shape in SHAPES:
        a, b = picked.get(("nexrtc", shape)), picked.get(("gdnsd", shape))
        if a and b:
            out.append(f"Ours / gdnsd, queries per server CPU-second, {shape}: "
                       f"**{a['per_cpu'] / b['per_cpu']:.2f}**.  ")
    if profiled:
        shares, top = profiled
        out.append("")
        out.append("Where our server's CPU goes (`perf record -e cpu-clock` during one run without "
                   "ECS, samples grouped by binary and symbol):")
        out.append("")
        out.append("| part | share of samples |")
        out.append("|---|---|")
        for name, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
            out.append(f"| {name} | {pct:.1f}% |")
        out.append("")
        out.append("Top symbols:")
        out.append("")
        out.append("```")
        out.extend(top)
        out.append("```")
    out.append("")
    out.append("Server commands: " + "; ".join(f"`{c}`" for c in commands.values()) + ".")
    out.append("<!-- dns:end -->")
    section = "\n".join(out) + "\n"
    if not args.no_write:
        write_section("dns", section)
    print(section)


if __name__ == "__main__":
    main()
