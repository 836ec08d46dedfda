#!/usr/bin/env python3
"""The QUIC relay's benchmark (issue 12): CONNECT-UDP tunnels beside TURN allocations of
the same relay, coturn and the raw forwarder, in one run on this machine.

Servers (each started fresh, one worker, pinned to CPU 1 with the load on CPU 0; see
benches/relay_load.py, whose server and load helpers this script uses):
  * `nexrtc relay` without its QUIC listener, and with `--quic-listen` (the listener on,
    idle during the TURN runs): the TURN path with QUIC off and on;
  * the same relay's QUIC listener under `turnbench-masque relay` (RFC 9298 tunnels to
    echo peers, closed loop, window 2 per tunnel), in two shapes: 64 connections with one
    tunnel each (one client per connection, as TURN's 64 clients), and 8 connections with
    8 tunnels each (QUIC packs the datagrams queued on one connection into shared packets);
  * coturn (TURN) and the raw forwarder (`turnbench-rawfwd`: the machine's UDP limit),
    under `turnbench-load relay` (64 clients, window 2).
Then: QUIC handshakes (each with its HTTP/3 setup and one CONNECT-UDP answered 200) per
server CPU-second beside TURN Allocates (with their 401 round trip) per CPU-second, and
the server's RSS per idle tunnel beside its RSS per idle allocation.

Writes the "quic" section of benches/RESULTS.md.
Usage: python3 benches/quic_load.py [--quick] [--no-build] [--no-write] [--repeat N]
Traffic goes to 127.0.0.0/8 only; every run is bounded in count and time.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, write_section
import relay_load as rl

MASQUE = os.path.join(rl.REL, "turnbench-masque")


def masque(mode, server, quic, *args, timeout=300):
    cmd = [MASQUE, mode, "--server", f"127.0.0.1:{quic}", "--secret", rl.SECRET,
           "--server-pid", str(server.pid), "--max-seconds", "240"] + [str(a) for a in args]
    if server.gen_cpus:
        cmd += ["--cpus", ",".join(str(c) for c in server.gen_cpus)]
    env = dict(os.environ, RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                         preexec_fn=rl.raise_limits, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr[-1500:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["cmd"] = " ".join(os.path.basename(c) if i == 0 else c for i, c in enumerate(cmd))
    return res


class Ours(rl.Server):
    """Our relay, with its QUIC listener when `quic` (a port)."""

    def __init__(self, tmp, relay_help, quic=None):
        extra = ["--quic-listen", f"127.0.0.1:{quic}"] if quic else []
        self.quic = quic
        super().__init__("nexrtc", 1, tmp, relay_help=relay_help, extra=extra, pin=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    parser.add_argument("--repeat", type=int, default=0, help="runs per configuration (default 3)")
    args = parser.parse_args()
    if not args.no_build:
        rl.log("building release binaries …")
        subprocess.run(["cargo", "build", "--release", "-p", "nexrtc", "-p", "turnbench"],
                       cwd=rl.ROOT, check=True)
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs: the server and the load are pinned apart")
    quick = args.quick
    dur = 1.0 if quick else 3.0
    repeat = args.repeat or (1 if quick else 3)
    payloads = [100, 1000]
    relay_help = subprocess.run([rl.NEXRTC, "relay", "--help"], capture_output=True,
                                text=True, timeout=30).stdout
    have_coturn = subprocess.run(["which", "turnserver"], capture_output=True).returncode == 0
    started = time.time()
    load_start = rl.loadavg()
    rows = {}  # (name, payload) -> [runs]
    commands = []

    def add(name, payload, res):
        rows.setdefault((name, payload), []).append(res)

    with tempfile.TemporaryDirectory(prefix="nexrtc-quicbench-") as tmp:
        for rep in range(repeat):
            for payload in payloads:
                rl.log(f"round {rep + 1}/{repeat}, {payload} B")
                with Ours(tmp, relay_help) as s:
                    add("turn-quic-off", payload, rl.relay_run(s, payload, dur, window=rl.WINDOW))
                    commands.append(" ".join(s.cmd))
                with Ours(tmp, relay_help, quic=free_port()) as s:
                    add("turn-quic-on", payload, rl.relay_run(s, payload, dur, window=rl.WINDOW))
                    add("quic-64x1", payload, masque("relay", s, s.quic, "--connections", 64,
                                                     "--tunnels", 1, "--window", rl.WINDOW,
                                                     "--payload", payload, "--duration", dur))
                    add("quic-8x8", payload, masque("relay", s, s.quic, "--connections", 8,
                                                    "--tunnels", 8, "--window", rl.WINDOW,
                                                    "--payload", payload, "--duration", dur))
                    commands.append(" ".join(s.cmd))
                if have_coturn:
                    with rl.Server("coturn", 1, tmp, pin=True) as s:
                        add("coturn", payload, rl.relay_run(s, payload, dur, window=rl.WINDOW))
                with rl.Server("rawfwd", 1, tmp, pin=True) as s:
                    add("rawfwd", payload, rl.relay_run(s, payload, dur, window=rl.WINDOW))
        rl.log("handshakes and allocations per CPU-second")
        count = 500 if quick else 3000
        with Ours(tmp, relay_help, quic=free_port()) as s:
            hs = masque("handshakes", s, s.quic, "--count", count, "--concurrency", 16)
            # Enough Allocates for the CPU clock (10 ms ticks) to resolve their cost.
            alloc = rl.alloc_run(s, *((4000, 4000) if quick else (30000, 10000)))
        rl.log("memory per idle tunnel and per idle allocation")
        conns, per = (8, 64) if quick else (32, 64)  # 64: the relay's tunnels per connection
        with Ours(tmp, relay_help, quic=free_port()) as s:
            hold_q = masque("hold", s, s.quic, "--connections", conns, "--tunnels", per,
                            "--settle", 1.0)
        with Ours(tmp, relay_help) as s:
            hold_t = rl.hold_run(s, conns * per, 1.0)
    elapsed = time.time() - started
    section = render(args, quick, dur, repeat, payloads, rows, hs, alloc, hold_q, hold_t,
                     commands, load_start, rl.loadavg(), elapsed, have_coturn)
    if not args.no_write:
        write_section("quic", section)
    print(section)


NAMES = {
    "turn-quic-off": "nexrtc relay, TURN (QUIC listener off)",
    "turn-quic-on": "nexrtc relay, TURN (QUIC listener on, idle)",
    "quic-64x1": "nexrtc relay, CONNECT-UDP: 64 connections × 1 tunnel",
    "quic-8x8": "nexrtc relay, CONNECT-UDP: 8 connections × 8 tunnels",
    "coturn": "coturn, TURN",
    "rawfwd": "raw forwarder (the machine's limit)",
}


def render(args, quick, dur, repeat, payloads, rows, hs, alloc, hold_q, hold_t, commands,
           load_start, load_end, elapsed, have_coturn):
    f, i = rl.fmt_f, rl.fmt_int
    out = ["<!-- quic:begin (written by benches/quic_load.py) -->",
           "## QUIC relay: CONNECT-UDP tunnels beside TURN, coturn and the raw forwarder", ""]
    out.append(f"Command: `python3 benches/quic_load.py{' --quick' if quick else ''}"
               f"{f' --repeat {args.repeat}' if args.repeat else ''}`  ")
    out.append(f"Machine: {os.cpu_count()} CPUs, kernel {os.uname().release}, "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {load_start} "
               f"at the start, {load_end} at the end. Run took {elapsed:.0f} s. "
               f"Our relay: commit `{rl.git_rev()}`. coturn: "
               f"{rl.coturn_version() if have_coturn else 'not installed'}.")
    out.append("")
    out.append(f"Every server runs one worker pinned to CPU 1; the load generator is pinned to "
               f"CPU 0. Closed loop, {rl.WINDOW} datagrams in flight per client or tunnel, "
               f"{dur:g} s measured, {repeat} run(s) per configuration, servers interleaved; "
               f"the row is the run with the median relayed datagrams per server CPU-second "
               f"(range in brackets). Relayed counts both legs (client → peer and peer → "
               f"client). TURN load: `turnbench-load relay`, 64 clients with ChannelData to "
               f"echo peers. CONNECT-UDP load: `turnbench-masque relay`, tunnels to echo "
               f"peers, HTTP Datagrams with Context ID 0. The relay's tokio runtime (which "
               f"runs the QUIC listener) and its TURN worker share the one pinned CPU. "
               f"\"UDP packets per datagram\" is, for the CONNECT-UDP rows, the client's "
               f"QUIC packets sent and received per datagram relayed to it and from it: "
               f"QUIC packs datagrams that queue together on one connection into one packet "
               f"(and acknowledges in the same packets), so several tunnels on one "
               f"connection cost the relay fewer client-side packets; the peer side is one "
               f"UDP datagram each way per payload, as for TURN.")
    out.append("")
    out.append("| server | payload | relayed datagrams/s | Mbit/s | loss | server CPU-s | "
               "relayed per CPU-s (min–max) | CPU µs per datagram | UDP packets per datagram "
               "(client side) | RTT p50 / p99 µs |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    picked = {}
    for payload in payloads:
        for key in NAMES:
            runs = rows.get((key, payload))
            if not runs:
                continue
            r = rl.median_run(runs, "relayed_per_cpu_sec")
            picked[(key, payload)] = r
            pps = r.get("relayed_pps") or r.get("relayed_per_sec")
            mbit = r.get("mbps") or r.get("mbit")
            per = r.get("relayed_per_cpu_sec")
            spread = r.get("spread")
            rng = f" ({i(spread[0])}–{i(spread[1])})" if spread and len(runs) > 1 else ""
            cpu_us = 1e6 / per if per else None
            if key.startswith("quic"):
                dgrams = (r.get("received") or 0)
                pkts = (r.get("client_udp_tx", 0) + r.get("client_udp_rx", 0))
                ppd = f(pkts / (2 * dgrams), 2) if dgrams else "–"
            else:
                ppd = "1.00"
            out.append(f"| {NAMES[key]} | {payload} B | {i(pps)} | {f(mbit)} | "
                       f"{rl.pct(r.get('loss'))} | {f(r.get('server_cpu_secs'), 2)} | "
                       f"{i(per)}{rng} | {f(cpu_us, 2)} | {ppd} | "
                       f"{f(r.get('rtt_p50_us'), 0)} / {f(r.get('rtt_p99_us'), 0)} |")
    out.append("")
    out.append("Ratios of relayed datagrams per server CPU-second:")
    out.append("")
    out.append("| payload | TURN, QUIC on / off | CONNECT-UDP 64×1 / our TURN | CONNECT-UDP 8×8 / "
               "our TURN | CONNECT-UDP 64×1 / coturn TURN | our TURN / raw forwarder |")
    out.append("|---|---|---|---|---|---|")

    def per(key, payload):
        return (picked.get((key, payload)) or {}).get("relayed_per_cpu_sec")

    for payload in payloads:
        turn = per("turn-quic-off", payload)
        cells = [rl.ratio(per("turn-quic-on", payload), turn),
                 rl.ratio(per("quic-64x1", payload), turn),
                 rl.ratio(per("quic-8x8", payload), turn),
                 rl.ratio(per("quic-64x1", payload), per("coturn", payload)),
                 rl.ratio(turn, per("rawfwd", payload))]
        out.append(f"| {payload} B | " + " | ".join(f(c, 2) for c in cells) + " |")
    out.append("")
    out.append("Setting up and holding:")
    out.append("")
    out.append("| what | count | per second | server CPU µs each | per server CPU-s | "
               "RSS per idle one |")
    out.append("|---|---|---|---|---|---|")
    out.append(f"| QUIC connection: handshake (TLS 1.3, no 0-RTT) + HTTP/3 setup + one "
               f"CONNECT-UDP answered 200, 16 at a time | {i(hs.get('count'))} "
               f"({hs.get('failed')} failed) | {i(hs.get('per_sec'))} | "
               f"{f(hs.get('cpu_us_each'), 0)} | {i(hs.get('per_cpu_sec'))} | – |")
    out.append(f"| TURN Allocate with its 401 round trip (same relay) | "
               f"{i(alloc.get('allocations'))} | {i(alloc.get('allocs_per_sec'))} | "
               f"{f(alloc.get('cpu_us_per_alloc'), 0)} | {i(alloc.get('allocs_per_cpu_sec'))} | – |")
    out.append(f"| idle CONNECT-UDP tunnel ({hold_q.get('connections')} connections × "
               f"{hold_q['tunnels'] // max(1, hold_q.get('connections', 1))} tunnels) | "
               f"{i(hold_q.get('tunnels'))} | – | – | – | {i(hold_q.get('bytes_per_tunnel'))} B |")
    out.append(f"| idle TURN allocation (one relay socket each) | {i(hold_t.get('held'))} | – | – | – | "
               f"{i(hold_t.get('bytes_per_alloc_settled') or hold_t.get('bytes_per_alloc'))} B |")
    out.append("")
    out.append("A tunnel holds a connected UDP socket and a task on each side (datagrams to the "
               "client, capsules from it), and its connection holds quinn's per-connection "
               "state (buffers, congestion control, the TLS session) shared by its tunnels.")
    out.append("")
    out.append("Server commands: " + "; ".join(f"`{c}`" for c in dict.fromkeys(commands)) + ".")
    out.append("Load commands: " + "; ".join(
        f"`{r['cmd']}`" for r in [picked[k] for k in sorted(picked)][:4] + [hs, hold_q]) + ".")
    out.append("<!-- quic:end -->")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
