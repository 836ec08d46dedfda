#!/usr/bin/env python3
"""XDP fast-path benchmark (issue 14): relayed packets per CPU-second with the relay's
XDP program vs its userspace path vs the raw userspace forwarder vs coturn (and the
kernel's own IP forwarding, for reference), in one veth topology, in one run.

Topology (three network namespaces this script makes and removes):

    client ns  c0 10.77.1.2, .10-.17 --- r0 10.77.1.1  relay ns  r1 10.77.2.1 --- p0 10.77.2.2  peer ns

The server under test runs in the relay ns, pinned to CPU 1 (one worker / thread).

Throughput (`turnbench-circulate`): 64 clients allocate (TURN Allocate + CreatePermission
+ ChannelBind; the raw forwarder's binding; nothing for kernel forwarding), then an XDP
reflector on c0 and p0 (benches/turnbench/bpf/reflect.c) sends every relayed packet
straight back (XDP_TX) and 2 packets per client are injected once: they circulate
client → relay → peer → relay → client at the server's pace. The generator's cost is one
small XDP program run per packet, not a socket's receive and send, so the machine's
whole CPU time (/proc/stat, both CPUs: user + system + irq + softirq, wherever the kernel
ran it) is, but for that, the server's. On veth, XDP and the receive stack run in
softirq on the CPU that sent the frame, so per-process or per-CPU accounting would miss
them: only the whole machine's time is fair to all. A second window with the kernel's BPF
statistics on (kernel.bpf_stats_enabled) gives each program's run time per run; the
statistics cost time themselves, so the rate and CPU come from the first window.
Servers without an XDP program of their own get an XDP_PASS program on r0/r1 (veth
delivers XDP-transmitted frames only to an interface with a program).

Latency (`turnbench-load relay`): open loop at a fixed rate, clients in the client ns,
peers echoing in the peer ns, round-trip p50/p99 per server, and "added" = minus the
kernel-forwarding path's at the same rate.

Writes the "relay-xdp" section of benches/RESULTS.md.
Usage: python3 benches/xdp_load.py [--quick] [--no-build] [--no-write]   (as root)
Traffic stays inside the namespaces; every run is bounded in count and time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from benchlib import log_tail, stop_process, write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "release")
NEXRTC = os.environ.get("NEXRTC_BIN") or os.path.join(REL, "nexrtc")
CIRCULATE = os.path.join(REL, "turnbench-circulate")
LOAD = os.path.join(REL, "turnbench-load")
RAWFWD = os.path.join(REL, "turnbench-rawfwd")
REFLECT_C = os.path.join(ROOT, "benches", "turnbench", "bpf", "reflect.c")
SECRET = "bench-secret-" + os.urandom(4).hex()
REALM = "bench"
CLIENTS = 64
PER_IP = 8
WINDOW = 2
PAYLOAD = 100
LISTEN = "10.77.1.1"
RELAY_IP = "10.77.2.1"
CLIENT_IP = "10.77.1.2"
CLIENT_IPS_FROM = 10            # 10.77.1.10 … .17: 8 clients per IP
PEER_IP = "10.77.2.2"
PORT = 3478
SERVER_CPU = 1
GEN_CPU = 0
# Configurations, in the order of the table.
KINDS = ("xdp", "nexrtc", "rawfwd", "coturn", "kernel")
TITLES = {
    "xdp": "our relay, `--xdp r0 r1`",
    "nexrtc": "our relay, userspace",
    "rawfwd": "raw forwarder (recvmmsg/sendmmsg, no TURN)",
    "coturn": "coturn",
    "kernel": "kernel IP forwarding (no relay)",
}
TARGET_RATIO = 3.0       # XDP packets per CPU-second >= 3x our userspace path


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def sh(*cmd, check=True, capture=False):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}: {r.stderr.strip()}")
    return r.stdout if capture else r


class Topology:
    def __init__(self):
        tag = f"{os.getpid() % 100000}"
        self.c, self.r, self.p = f"nxb{tag}c", f"nxb{tag}r", f"nxb{tag}p"
        for ns in (self.c, self.r, self.p):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "c0", "netns", self.c, "type", "veth", "peer", "name", "r0",
           "netns", self.r)
        sh("ip", "link", "add", "p0", "netns", self.p, "type", "veth", "peer", "name", "r1",
           "netns", self.r)
        addrs = [(self.c, "c0", f"{CLIENT_IP}/24"), (self.r, "r0", f"{LISTEN}/24"),
                 (self.r, "r1", f"{RELAY_IP}/24"), (self.p, "p0", f"{PEER_IP}/24")]
        addrs += [(self.c, "c0", f"10.77.1.{CLIENT_IPS_FROM + i}/24")
                  for i in range(CLIENTS // PER_IP)]
        for ns, dev, cidr in addrs:
            sh("ip", "-n", ns, "addr", "add", cidr, "dev", dev)
        for ns, dev in ((self.c, "c0"), (self.r, "r0"), (self.r, "r1"), (self.p, "p0")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        # The relay ns routes (kernel forwarding run; the XDP program's route lookup
        # wants forwarding on its interfaces too); clients and peers route through it.
        sh("ip", "netns", "exec", self.r, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        for dev in ("r0", "r1"):
            sh("ip", "netns", "exec", self.r, "sysctl", "-q", "-w",
               f"net.ipv4.conf.{dev}.forwarding=1")
        sh("ip", "-n", self.c, "route", "add", "default", "via", LISTEN)
        sh("ip", "-n", self.p, "route", "add", "default", "via", RELAY_IP)
        # Neighbour entries both ways (XDP passes packets it has no neighbour for yet).
        cmac = self.mac(self.c, "c0")
        pmac = self.mac(self.p, "p0")
        for i in [None] + list(range(CLIENTS // PER_IP)):
            ip = CLIENT_IP if i is None else f"10.77.1.{CLIENT_IPS_FROM + i}"
            sh("ip", "-n", self.r, "neigh", "replace", ip, "lladdr", cmac, "dev", "r0",
               "nud", "permanent")
        sh("ip", "-n", self.r, "neigh", "replace", PEER_IP, "lladdr", pmac, "dev", "r1",
           "nud", "permanent")
        sh("ip", "-n", self.c, "neigh", "replace", LISTEN, "lladdr", self.mac(self.r, "r0"),
           "dev", "c0", "nud", "permanent")
        sh("ip", "-n", self.p, "neigh", "replace", RELAY_IP, "lladdr", self.mac(self.r, "r1"),
           "dev", "p0", "nud", "permanent")

    @staticmethod
    def mac(ns, dev):
        out = sh("ip", "-n", ns, "-j", "link", "show", dev, capture=True)
        return json.loads(out)[0]["address"]

    def xdp_pass(self, ns, dev, on, obj):
        if on:
            sh("ip", "-n", ns, "link", "set", "dev", dev, "xdpdrv", "object", obj,
               "program", "pass")
        else:
            sh("ip", "-n", ns, "link", "set", "dev", dev, "xdpdrv", "off", check=False)

    def destroy(self):
        for ns in (self.c, self.r, self.p):
            sh("ip", "netns", "del", ns, check=False)


class Server:
    def __init__(self, kind, topo, tmp):
        self.kind, self.topo = kind, topo
        self.proc = None
        self.logpath = os.path.join(tmp, f"{kind}.log")
        self.metrics = None
        if kind in ("xdp", "nexrtc"):
            self.metrics = "127.0.0.1:9641"
            cmd = [NEXRTC, "relay", "--realm", REALM, "--static-auth-secret", SECRET,
                   "--listening-ip", LISTEN, "--listening-port", PORT, "--relay-ip", RELAY_IP,
                   "--allowed-peer-ip", "10.77.2.0/24", "--no-tcp", "--no-tls",
                   "--metrics-listen", self.metrics, "--drain-grace", "0",
                   "--min-port", "49152", "--max-port", "65535",
                   "--user-quota", "0", "--total-quota", "0", "--relay-threads", "1"]
            if kind == "xdp":
                cmd += ["--xdp", "r0", "--xdp", "r1"]
        elif kind == "coturn":
            conf = os.path.join(tmp, "coturn.conf")
            with open(conf, "w") as f:
                f.write("\n".join([
                    f"listening-ip={LISTEN}", f"listening-port={PORT}", f"relay-ip={RELAY_IP}",
                    "min-port=49152", "max-port=65535", f"realm={REALM}", "use-auth-secret",
                    f"static-auth-secret={SECRET}", "no-tcp", "no-tls", "no-dtls",
                    "no-tcp-relay", "no-cli", "no-multicast-peers", "relay-threads=1",
                    f"log-file={self.logpath}.coturn", "simple-log", "no-stdout-log",
                    f"pidfile={os.path.join(tmp, 'coturn.pid')}",
                    f"userdb={os.path.join(tmp, 'coturn.db')}"]) + "\n")
            cmd = ["turnserver", "-c", conf]
        elif kind == "rawfwd":
            cmd = [RAWFWD, "--listen", f"{LISTEN}:{PORT}", "--relay-ip", RELAY_IP,
                   "--threads", "1", "--max-seconds", "900"]
        else:
            return              # kernel forwarding: no process
        self.logf = open(self.logpath, "w")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", topo.r] + [str(c) for c in cmd],
            stdout=self.logf, stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CPU}))
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{kind} exited: {self.tail()}")
            out = sh("ip", "netns", "exec", topo.r, "ss", "-Hunl", f"sport = :{PORT}",
                     capture=True, check=False)
            if out.strip():
                time.sleep(0.3)
                return
            time.sleep(0.1)
        raise RuntimeError(f"{kind} not ready: {self.tail()}")

    @property
    def pid(self):
        """The server's own PID (`ip netns exec` execs it, so the same)."""
        return self.proc.pid if self.proc else None

    def tail(self):
        return log_tail(self.logpath)

    def xdp_outcomes(self):
        """nexrtc_relay_xdp_packets_total by outcome (our relay only)."""
        if not self.metrics:
            return {}
        out = sh("ip", "netns", "exec", self.topo.r, "curl", "-s",
                 f"http://{self.metrics}/metrics", capture=True, check=False)
        res = {}
        for line in out.splitlines():
            if line.startswith("nexrtc_relay_xdp_packets_total{"):
                label = line.split('outcome="', 1)[1].split('"', 1)[0]
                res[label] = int(float(line.rsplit(" ", 1)[1]))
        return res

    def stop(self):
        if self.proc:
            stop_process(self.proc, self.logf)


def target_of(kind):
    return {"rawfwd": "fake", "kernel": "direct"}.get(kind, "turn")


def run_json(cmd, timeout):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def circulate(topo, server, obj, duration, stats_duration):
    server_addr = f"{PEER_IP}:9" if server.kind == "kernel" else f"{LISTEN}:{PORT}"
    cmd = ["ip", "netns", "exec", topo.c, "taskset", "-c", GEN_CPU, CIRCULATE,
           "--server", server_addr, "--target", target_of(server.kind), "--secret", SECRET,
           "--clients", CLIENTS, "--per-ip", PER_IP,
           "--client-ip", f"10.77.1.{CLIENT_IPS_FROM}", "--peer-ip", PEER_IP,
           "--peer-netns", topo.p, "--reflector", obj, "--client-if", "c0", "--peer-if", "p0",
           "--window", WINDOW, "--payload", PAYLOAD, "--duration", duration,
           "--stats-duration", stats_duration]
    if server.pid:
        cmd += ["--server-pid", server.pid]
    res = run_json(cmd, timeout=90)
    res["cmd"] = " ".join(str(c) for c in cmd[7:]).replace(ROOT + "/", "")
    return res


def latency(topo, server, rate, duration):
    server_addr = f"{PEER_IP}:9" if server.kind == "kernel" else f"{LISTEN}:{PORT}"
    cmd = ["ip", "netns", "exec", topo.c, LOAD, "relay", "--server", server_addr,
           "--target", target_of(server.kind), "--secret", SECRET, "--clients", CLIENTS,
           "--per-ip", PER_IP, "--client-ip", f"10.77.1.{CLIENT_IPS_FROM}",
           "--peer-ip", PEER_IP, "--peer-netns", topo.p, "--payload", PAYLOAD,
           "--rate", rate, "--duration", duration, "--cpus", GEN_CPU]
    if server.pid:
        cmd += ["--server-pid", server.pid]
    res = run_json(cmd, timeout=90)
    res["cmd"] = " ".join(str(c) for c in cmd[4:]).replace(ROOT + "/", "")
    return res


def one_server(kind, topo, tmp, obj, args):
    own_xdp = kind == "xdp"
    if not own_xdp:
        for dev in ("r0", "r1"):
            topo.xdp_pass(topo.r, dev, True, obj)
    server = Server(kind, topo, tmp)
    try:
        before = server.xdp_outcomes()
        circ = circulate(topo, server, obj, args.duration, args.stats_duration)
        after = server.xdp_outcomes()
        circ["xdp_outcomes"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        # Latency: XDP_PASS on the clients' and peers' interfaces too (XDP-redirected
        # frames need it), the same for every server.
        topo.xdp_pass(topo.c, "c0", True, obj)
        topo.xdp_pass(topo.p, "p0", True, obj)
        try:
            lat = latency(topo, server, args.rate, args.latency_duration)
        finally:
            topo.xdp_pass(topo.c, "c0", False, obj)
            topo.xdp_pass(topo.p, "p0", False, obj)
        return circ, lat
    finally:
        server.stop()
        if not own_xdp:
            for dev in ("r0", "r1"):
                topo.xdp_pass(topo.r, dev, False, obj)


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt(v, d=1):
    return "–" if v is None else f"{v:.{d}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one short round (smoke run)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all servers, alternating")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    ap.add_argument("--stats-duration", type=float, default=2.0)
    ap.add_argument("--rate", type=int, default=20000,
                    help="round trips per second of the latency runs")
    ap.add_argument("--latency-duration", type=float, default=5.0)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--kinds", default=",".join(KINDS))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.stats_duration, args.latency_duration = 1, 2.0, 1.0, 2.0
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces, XDP)")
    for tool in ("clang", "ip", "turnserver", "taskset", "ss", "curl"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install clang iproute2 coturn util-linux curl)")
    kinds = [k for k in args.kinds.split(",") if k]
    if not args.no_build:
        env = dict(os.environ)
        env.pop("NEXRTC_NO_XDP", None)
        subprocess.run(["cargo", "build", "--release", "-p", "nexrtc", "-p", "turnbench"],
                       cwd=ROOT, check=True, env=env)
    tmp = tempfile.mkdtemp(prefix="nexrtc-xdp-bench-")
    obj = os.path.join(tmp, "reflect.o")
    arch = os.uname().machine
    sh("clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
       f"-I/usr/include/{arch}-linux-gnu", "-c", REFLECT_C, "-o", obj)

    topo = Topology()
    results = {k: [] for k in kinds}
    try:
        for rnd in range(args.rounds):
            for kind in kinds:
                log(f"round {rnd + 1}/{args.rounds}: {kind}")
                circ, lat = one_server(kind, topo, tmp, obj, args)
                log(f"  {circ['relayed_pps']:,.0f} pps, busy {circ['cpu']['busy']:.2f} CPU-s, "
                    f"{circ['relayed_per_busy_cpu_sec']:,.0f} per CPU-s; "
                    f"p99 {lat['rtt_p99_us']} us; xdp {circ.get('xdp_outcomes')}")
                results[kind].append((circ, lat))
    finally:
        topo.destroy()
    section = render(args, kinds, results)
    print(section)
    if not args.no_write:
        write_section("relay-xdp", section)
    shutil.rmtree(tmp, ignore_errors=True)


def render(args, kinds, results):
    def med(kind, f):
        return median([f(c, l) for c, l in results[kind]])

    per_cpu = {k: med(k, lambda c, l: c["relayed_per_busy_cpu_sec"]) for k in kinds}
    p99 = {k: med(k, lambda c, l: l["rtt_p99_us"]) for k in kinds}
    p50 = {k: med(k, lambda c, l: l["rtt_p50_us"]) for k in kinds}
    base99 = p99.get("kernel")
    base50 = p50.get("kernel")

    def prog_ns(kind, name):
        vals = []
        for c, _ in results[kind]:
            p = c["programs"].get(name)
            if p and p["runs"]:
                vals.append(p["run_ns"] / p["runs"])
        return median(vals)

    def reflect_share(kind):
        vals = []
        for c, _ in results[kind]:
            p = c["programs"].get("reflect")
            if p and p["runs"] and c["stats_secs"]:
                # Reflector run time per relayed packet over busy CPU per relayed packet.
                ns_per = p["run_ns"] / max(c["stats_relayed"], 1)
                busy_per = c["cpu"]["busy"] / max(c["relayed"], 1) * 1e9
                vals.append(ns_per / busy_per if busy_per else None)
        return median(vals)

    date = time.strftime("%Y-%m-%d")
    kernel = os.uname().release
    rev = sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD", capture=True, check=False).strip()
    cmdline = "python3 benches/xdp_load.py" + (" --quick" if args.quick else "")
    lines = [
        "<!-- relay-xdp:begin (written by benches/xdp_load.py) -->",
        "## Relay: XDP fast path vs userspace, per CPU-second",
        "",
        f"Command: `{cmdline}` (as root)",
        f"Machine: {os.cpu_count()} CPUs, kernel {kernel}, {date}, commit {rev}.",
        "Setup: three network namespaces joined by veth pairs (client ns — relay ns — peer "
        "ns, native XDP on veth); the server in the relay ns, one worker, pinned to CPU "
        f"{SERVER_CPU}. {CLIENTS} clients ({PER_IP} per source IP), {PAYLOAD}-byte payloads. "
        f"Throughput: {WINDOW} packets per client injected once circulate between two XDP "
        "reflectors on the client's and peer's interfaces (XDP_TX), at the server's pace, "
        f"{args.duration:g} s measured after 1 s of warm-up, {args.rounds} round(s) alternating "
        "servers, medians. **CPU is the whole machine's** (/proc/stat, both CPUs, user + "
        "system + irq + softirq): on veth, XDP and the receive stack run in softirq on "
        "whichever CPU sent the frame, so only the total is fair to every server; it "
        "includes the reflectors (their own program time is given as a share below) and "
        "everything else the machine did. Servers without an XDP program of their own get an "
        "XDP_PASS program on the relay ns's interfaces (veth delivers XDP-transmitted "
        "frames only to an interface with one). Program run times come from a second "
        f"window of {args.stats_duration:g} s with `kernel.bpf_stats_enabled` on.",
        "",
        "| server | relayed packets/s | machine CPU-s per s (user/sys/softirq) | relayed packets per CPU-second | vs our userspace | vs raw forwarder | program ns per packet | reflectors' share of CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    us = per_cpu.get("nexrtc")
    raw = per_cpu.get("rawfwd")
    for k in kinds:
        rate = med(k, lambda c, l: c["relayed_pps"])
        u = med(k, lambda c, l: c["cpu"]["user"] / c["secs"])
        s = med(k, lambda c, l: c["cpu"]["system"] / c["secs"])
        si = med(k, lambda c, l: c["cpu"]["softirq"] / c["secs"])
        b = med(k, lambda c, l: c["cpu"]["busy"] / c["secs"])
        prog = prog_ns(k, "relay_channels") if k == "xdp" else None
        share = reflect_share(k)
        lines.append(
            f"| {TITLES[k]} | {fmt_int(rate)} | {fmt(b, 2)} ({fmt(u, 2)}/{fmt(s, 2)}/{fmt(si, 2)}) "
            f"| {fmt_int(per_cpu[k])} | "
            f"{fmt(per_cpu[k] / us, 2) + '×' if us and per_cpu[k] else '–'} | "
            f"{fmt(per_cpu[k] / raw, 2) + '×' if raw and per_cpu[k] else '–'} | "
            f"{fmt(prog, 0) if prog else '–'} | {fmt(share * 100, 0) + ' %' if share else '–'} |")
    lines += ["", f"Latency: open loop, {args.rate:,} round trips/s ({2 * args.rate:,} relayed "
              f"packets/s), {args.latency_duration:g} s per server, peers echoing in the peer ns "
              "(no reflectors); added = minus the kernel-forwarding path's round trip at the same "
              "rate.", "",
              "| server | round trip p50 | p99 | added p50 | added p99 | loss |",
              "|---|---|---|---|---|---|"]
    for k in kinds:
        loss = med(k, lambda c, l: l["loss"])
        a50 = p50[k] - base50 if p50[k] is not None and base50 is not None else None
        a99 = p99[k] - base99 if p99[k] is not None and base99 is not None else None
        lines.append(f"| {TITLES[k]} | {fmt(p50[k])} µs | {fmt(p99[k])} µs | "
                     f"{fmt(a50) + ' µs' if k != 'kernel' and a50 is not None else '–'} | "
                     f"{fmt(a99) + ' µs' if k != 'kernel' and a99 is not None else '–'} | "
                     f"{fmt(loss * 100, 3) if loss is not None else '–'} % |")
    if "xdp" in kinds and us:
        ratio = per_cpu["xdp"] / us
        met = ratio >= TARGET_RATIO
        worse = (p99.get("xdp") or 0) > (p99.get("nexrtc") or 0)
        lines += ["", f"XDP / our userspace path, packets per CPU-second: **{ratio:.2f}×** "
                  f"(target ≥ {TARGET_RATIO:g}×: **{'met' if met else 'not met'}**); p99 round "
                  f"trip {fmt(p99.get('xdp'))} µs vs {fmt(p99.get('nexrtc'))} µs: "
                  f"**{'worse' if worse else 'not worse'}**."]
        outcomes = [c.get("xdp_outcomes", {}) for c, _ in results["xdp"]]
        lines += [f"XDP outcomes counted by the relay during the throughput runs: {outcomes}."]
    lines += ["", "Per run (throughput: relayed packets/s, per CPU-second; latency p99):", ""]
    for k in kinds:
        runs = "; ".join(f"{c['relayed_pps']:,.0f}/s, {c['relayed_per_busy_cpu_sec']:,.0f}, "
                         f"{l['rtt_p99_us']} µs" for c, l in results[k])
        lines.append(f"- {TITLES[k]}: {runs}")
    if results.get(kinds[0]):
        lines += ["", f"Commands (first server): `{results[kinds[0]][0][0]['cmd']}`; "
                  f"`{results[kinds[0]][0][1]['cmd']}`."]
    lines += ["<!-- relay-xdp:end -->", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
