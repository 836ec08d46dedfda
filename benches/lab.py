#!/usr/bin/env python3
"""The multi-region lab as a benchmark: the tests of tests/lab_regions.rs at full size,
several times, with their measurements kept.

* the lab's accuracy: `nexrtc-lab rtt --json` (every region pair, measured vs planned, and
  the forwarder's lateness);
* selection quality: `NEXRTC_LAB_CLIENTS` clients per kind and region (GeoIP right,
  misplaced subnet) plus the NAT client; the excess RTT of each client's first relay over
  its best, before and after client probes;
* failover: a region cut and healed, the control-plane failures (etcd member, etcd
  majority, controller, relay killed mid-call), and a signaling room whose controller
  dies, `--repeat` times each.

Writes the "Multi-region lab" section of benches/RESULTS.md and the plots
benches/lab-rtt.png (the measured matrix), benches/lab-excess.png (CDF of the excess RTT)
and benches/lab-failover.png (the timelines). Run as root on a machine where the lab
tests run (see README.md, "The multi-region lab"); needs matplotlib
(`pip install matplotlib==3.11.2`). Usage:

    python3 benches/lab.py [--clients 4] [--repeat 3] [--rtt-count 50] [--no-write]

The binaries are the debug build the tests use (the relay's speed does not enter these
numbers; the controllers' and agents' timers do).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from benchlib import ROOT, write_section

TEST = "lab_regions"


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")


def run_test(name, results_dir, clients):
    env = dict(os.environ, CI="true", NEXRTC_LAB_RESULTS=results_dir,
               NEXRTC_LAB_CLIENTS=str(clients))
    cmd = ["cargo", "test", "-q", "-p", "nexrtc", "--test", TEST, "--", "--exact", name,
           "--nocapture", "--test-threads", "1"]
    started = time.time()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-8000:])
        raise SystemExit(f"{name} failed")
    return time.time() - started


def load(results_dir, name):
    with open(os.path.join(results_dir, f"{name}.json")) as f:
        return json.load(f)


def rtt_matrix(count):
    subprocess.run(["cargo", "build", "-q", "-p", "nexrtc-lab"], cwd=ROOT, check=True)
    binary = os.path.join(target_dir(), "debug", "nexrtc-lab")
    out = subprocess.run([binary, "rtt", "--json", "--count", str(count)], capture_output=True,
                         text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def quantile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round((len(v) - 1) * q)))]


def plots(rtt, selection, cuts, failures):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # The measured matrix, planned values in brackets.
    regions = []
    for p in rtt["pairs"]:
        for r in (p["from"], p["to"]):
            if r not in regions:
                regions.append(r)
    n = len(regions)
    grid = [[0.0] * n for _ in range(n)]
    planned = [[0.0] * n for _ in range(n)]
    for p in rtt["pairs"]:
        i, j = regions.index(p["from"]), regions.index(p["to"])
        grid[i][j] = p["median_ms"] or 0.0
        planned[i][j] = p["planned_ms"]
    fig, ax = plt.subplots(figsize=(7.5, 6))
    im = ax.imshow(grid, cmap="viridis")
    ax.set_xticks(range(n), regions, rotation=35, ha="right")
    ax.set_yticks(range(n), regions)
    for i in range(n):
        for j in range(n):
            if i != j:
                ax.text(j, i, f"{grid[i][j]:.0f}\n({planned[i][j]:.0f})", ha="center",
                        va="center", fontsize=8, color="white" if grid[i][j] < 150 else "black")
    ax.set_title("Lab RTT, ms: measured median (planned)")
    fig.colorbar(im, ax=ax, label="ms")
    fig.tight_layout()
    fig.savefig(os.path.join(ROOT, "benches", "lab-rtt.png"), dpi=110)
    plt.close(fig)

    # CDF of the excess RTT of each client's first relay.
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, key in (("GeoIP only", "before"), ("after client probes", "after")):
        xs = sorted(r["excess_ms"] for r in selection[key])
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=f"{label} (n={len(xs)})")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("excess RTT of the first relay over the best, ms")
    ax.set_ylabel("fraction of clients")
    ax.set_title("Selection quality in the lab")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(ROOT, "benches", "lab-excess.png"), dpi=110)
    plt.close(fig)

    # Failover timelines.
    rows = []
    for i, c in enumerate(cuts):
        rows.append((f"cut eu-central #{i + 1}: out", c["gone_s"]))
        rows.append((f"healed #{i + 1}: back", c["back_s"]))
    for i, f in enumerate(failures):
        if "room" in f:
            rows.append((f"room's controller killed #{i + 1}: rejoined", f["room"]["rejoin_s"]))
        rows.append((f"relay killed #{i + 1}: out of registries", f["relay_gone_s"]))
        rows.append((f"relay killed #{i + 1}: media gap", f["media_gap_s"]))
        rows.append((f"etcd majority back #{i + 1}: converged", f["converged_s"]))
    fig, ax = plt.subplots(figsize=(7.5, 0.35 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r[1] for r in rows], color="tab:blue")
    ax.set_yticks(range(len(rows)), [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Failover timelines in the lab")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(ROOT, "benches", "lab-failover.png"), dpi=110)
    plt.close(fig)


def summary(records):
    excess = [r["excess_ms"] for r in records]
    optimal = sum(1 for e in excess if e <= 2.0)
    return optimal, len(excess), quantile(excess, 0.5), quantile(excess, 0.95), max(excess)


def section(args, rtt, selection, cuts, failures, elapsed):
    errors = [p["median_ms"] - p["planned_ms"] for p in rtt["pairs"] if p["median_ms"] is not None]
    late = rtt["lateness_us"]
    lines = ["<!-- lab:begin (written by benches/lab.py) -->",
             "## Multi-region lab: selection quality and failover",
             "",
             f"`python3 benches/lab.py --clients {args.clients} --repeat {args.repeat} "
             f"--rtt-count {args.rtt_count}` on {platform.node()} ({os.cpu_count()} cores), "
             f"{time.strftime('%Y-%m-%d')}, {elapsed / 60:.1f} min. Six regions in network "
             "namespaces with the RTTs of lab/planet.toml (approximate public AWS inter-region "
             "medians), 1 ms jitter and 0.1 % loss each way; 3 etcd members and controllers "
             "(us-east, eu-west, ap-northeast), 2 relays per region (debug build).",
             "",
             "**The lab's accuracy** (`nexrtc-lab rtt`, every ordered pair, "
             f"{args.rtt_count} probes each): measured median minus planned RTT "
             f"mean {sum(errors) / len(errors):+.2f} ms, largest |error| "
             f"{max(abs(e) for e in errors):.2f} ms over {len(errors)} pairs; the forwarder "
             f"wrote packets {late['p50']} µs after they were due at the median, "
             f"{late['p99']} µs at p99, {late['max']} µs at most ({late['count']} packets; an "
             "idle machine). With the whole network running: "
             f"{selection['lateness_us']['p50']} µs / {selection['lateness_us']['p99']} µs / "
             f"{selection['lateness_us']['max']} µs.",
             "",
             "![RTT matrix](lab-rtt.png)",
             "",
             "**Selection quality.** Truth: each client's RTT to all 12 relays, measured with "
             "STUN from its own namespace and address. Optimal: the ICE answer's first relay is "
             "within 2 ms of the best.",
             "",
             "| | clients | optimal | excess p50 | excess p95 | excess max |",
             "|---|---|---|---|---|---|"]
    for label, key in (("GeoIP only", "before"), ("after client probes", "after")):
        opt, n, p50, p95, mx = summary(selection[key])
        lines.append(f"| {label} | {n} | {opt} ({100 * opt / n:.0f} %) | {p50:.1f} ms | "
                     f"{p95:.1f} ms | {mx:.1f} ms |")
    misplaced = [r for r in selection["before"] if r["kind"] == "misplaced"]
    lines += ["",
              f"The {len(misplaced)} clients on misplaced subnets (GeoIP puts them on another "
              "continent) all got a far relay from GeoIP alone; after one `nexrtc probe` each, "
              f"every answer changed within {selection['steered_s']:.1f} s.",
              "",
              "![Excess RTT CDF](lab-excess.png)",
              "",
              "**Failover** (each run a fresh network):",
              "",
              "| run | region cut: out of every registry | healed: back | relay killed: out | "
              "mid-call media gap (moved to) | etcd majority down 8 s: converged after | "
              "room's controller killed: together again after |",
              "|---|---|---|---|---|---|---|"]
    for i in range(max(len(cuts), len(failures))):
        c = cuts[i] if i < len(cuts) else {}
        f = failures[i] if i < len(failures) else {}
        lines.append(f"| {i + 1} | {c.get('gone_s', 0):.1f} s | {c.get('back_s', 0):.1f} s | "
                     f"{f.get('relay_gone_s', 0):.1f} s | {f.get('media_gap_s', 0):.1f} s "
                     f"({f.get('moved_to', '-')}) | {f.get('converged_s', 0):.1f} s | "
                     f"{f.get('room', {}).get('rejoin_s', 0):.1f} s |")
    lines += ["",
              "In every run: one etcd member down changed nothing; with the majority down the "
              "controllers kept answering from their snapshots and removed no relay; a killed "
              "controller's agents moved and the other two kept answering with every relay. "
              "The mid-call gap is the client's own: 1 s of silence before it asks again, then "
              "up to 1 s for an Allocate to the dead relay if the answer still names it. The "
              "room's two participants (us-west, eu-central) reconnect as the demo page does; "
              "most of their wait is the dead controller's 5 s lease, until which the others "
              "still name it the room's owner.",
              "",
              "![Failover timelines](lab-failover.png)",
              "",
              "<!-- lab:end -->"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4,
                        help="clients per kind and region (GeoIP right, misplaced)")
    parser.add_argument("--repeat", type=int, default=3, help="failover runs")
    parser.add_argument("--rtt-count", type=int, default=50)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespaces)")
    started = time.time()
    subprocess.run(["cargo", "test", "-q", "-p", "nexrtc", "--test", TEST, "--no-run"],
                   cwd=ROOT, check=True)
    rtt = rtt_matrix(args.rtt_count)
    with tempfile.TemporaryDirectory() as d:
        run_test("client_probes_fix_selection_for_misplaced_networks", d, args.clients)
        selection = load(d, "selection")
        cuts, failures, rooms = [], [], []
        for _ in range(args.repeat):
            run_test("a_region_cut_off_leaves_the_answers_and_returns_when_healed", d, 1)
            cuts.append(load(d, "cut"))
            run_test("control_plane_failures_keep_the_answers_coming", d, 1)
            failures.append(load(d, "failures"))
            run_test("a_room_rejoins_on_another_replica_when_its_controller_dies", d, 1)
            rooms.append(load(d, "signaling"))
        for f, r in zip(failures, rooms):
            f["room"] = r
    text = section(args, rtt, selection, cuts, failures, time.time() - started)
    print(text)
    if not args.no_write:
        plots(rtt, selection, cuts, failures)
        write_section("lab", text)


if __name__ == "__main__":
    main()
