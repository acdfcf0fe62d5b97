"""Network figures: discovery time of N nodes around one bootstrap hub, and a deployment-stream round trip.

(a) Discovery. N nodes on loopback (real `nunet-dms` daemons, or bare P2PNode processes with `--kind nodes`),
p2p.heartbeat_s 2 (the default), all onboarded (each with its own advertised CPU, so a stale record is told
apart). The data dirs are prepared once (start, onboard, stop), then each measured run is a cold start: the hub
first (it is up before anyone needs it, as in a real network), then the N-1 others at once. Reported: the time
from their spawn to the last one's REST port answering (READY), and, counted from that moment, the time until
every node lists every other node's capacity in /api/v1/peers/dht; then, once the connections have settled,
each node's idle CPU, messages and bytes a second. The floor is the bare-node run (`--kind nodes`), where no
daemon sits on top of the P2P node. The clusters: network_clusters.py; the settling and the idle window:
network_idle.py.

(b) Stream round trip. A child process serves `/dms/bench-echo/1.0.0` (a line echo handler registered with
`P2PNode.handle`, the same path as the deployment handler: NetLineStream on both sides, the trio<->asyncio bridge
on both sides) and a plain asyncio TCP line echo on 127.0.0.1. This process opens one stream of each and times
request/response exchanges of one 200-byte line, interleaved in rounds (network_rtt.py).

Usage: .venv/bin/python bench/network.py [--part discovery|rtt|all] [--kind daemons|nodes|both]
       [--sizes 5,10,20] [--runs N] [--exchanges N] [--settle S] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from common import ROOT, append_results, header, load_note, median
from network_clusters import DISCOVERY_TIMEOUT_S, HEARTBEAT_S, POLL_S, Cluster, DaemonCluster, NodeCluster
from network_idle import IDLE_SETTLE_S, IDLE_WINDOW_S, SETTLE_MAX_S, SETTLED_QUIET_S, DiscoveryRun, settle_s
from network_rtt import echo_child, rtt_section

GOAL = "every node sees every other within 5 s of the last READY at N = 20 (10 s at 40); idle node under 1 % of a core"

# ----- (a) discovery -----


def discovery(kinds: list[str], sizes: list[int], runs: int) -> list[str]:
    rows: list[str] = []
    raw: dict[tuple[str, int], list[DiscoveryRun]] = {}
    with tempfile.TemporaryDirectory(prefix="dms-bench-net-") as d:
        for n in sizes:
            for kind in kinds:
                root = Path(d) / f"{kind}-{n}"
                print(f"discovery: preparing {n} {kind}", file=sys.stderr, flush=True)
                cluster: Cluster = DaemonCluster(n, root) if kind == "daemons" else NodeCluster(n, root)
                try:
                    for r in range(runs):
                        result = cluster.run()
                        print(f"  run {r + 1}: {result}", file=sys.stderr, flush=True)
                        raw.setdefault((kind, n), []).append(result)
                finally:
                    cluster.close()
    for (kind, n), results in raw.items():
        ok = [r.visible_s for r in results if r.visible_s is not None]
        failed = len(results) - len(ok)
        vis = f"{median(ok):.2f} s ({min(ok):.2f}-{max(ok):.2f})" if ok else "-"
        if failed:
            worst = min(results, key=lambda r: r.seen_pairs)
            vis += f"; {failed} run(s) not within {DISCOVERY_TIMEOUT_S:.0f} s ({worst.seen_pairs}/{worst.pairs} pairs)"
        if any(r.visible_s is not None and not r.still_visible for r in results):
            vis += "; a record was missing again on the re-check"
        what = "nunet-dms daemons" if kind == "daemons" else "bare P2PNode processes"
        hub = median([r.hub_ready_s for r in results])
        last = median([r.last_ready_s for r in results])
        cpu = median([r.cpu_s for r in results])
        settled_runs = [r.settled_s for r in results if r.settled_s is not None]
        settled = f"{median(settled_runs):.0f} s" if settled_runs else "-"
        if len(settled_runs) < len(results):
            settled += f"; {len(results) - len(settled_runs)} run(s) not within {SETTLE_MAX_S:.0f} s"
        node_cpu = [c for r in results for c in r.node_cpu]
        msgs = [m for r in results for m in r.node_msgs]
        sent = [b for r in results for b in r.node_bytes]
        rows.append(
            f"| {n} | {what} | {hub:.2f} s | {last:.2f} s | {vis} | {settled} | {cpu:.3f} "
            f"| {100 * median(node_cpu):.2f} % (max {100 * max(node_cpu):.2f} %) "
            f"| {median(msgs):.2f} (max {max(msgs):.2f}) | {median(sent):.0f} (max {max(sent):.0f}) |"
        )
    return rows


def discovery_section(kinds: list[str], sizes: list[int], runs: int) -> str:
    note = load_note()
    rows = discovery(kinds, sizes, runs)
    lines = [
        header("Discovery: N nodes around one bootstrap hub"),
        "",
        f"p2p.heartbeat_s {HEARTBEAT_S:g} (the default), loopback, every node onboarded with its own advertised CPU.",
        "Each run is a cold start of prepared data dirs: the hub first, then the N-1 others at once.",
        "READY: the REST port answers (daemons) / the node printed ready with its advert published (bare nodes).",
        "Visible: counted from the last READY until every node lists every other node with its exact capacity",
        f"(/api/v1/peers/dht, or node_proc's `peers`; polled every {POLL_S:g} s). Median of {runs} run(s), (min-max).",
        f"Settled: from the last READY until no node's connections (nor its trim and table-sync counts) changed for "
        f"{SETTLED_QUIET_S:g} s,",
        f"looked for from {settle_s():g} s after discovery (or its timeout) on, polled every second.",
        f"Idle: a {IDLE_WINDOW_S:g} s window once settled (or {SETTLE_MAX_S:g} s after the look began). Cores: all N",
        "processes together; per node: median over the nodes of all runs (max: the busiest node, usually the hub).",
        "Messages: pings (ours answered + peers' served) + records received (kept or not) + records published",
        "+ table syncs, from each",
        "node's own counters. Bytes: TCP bytes sent on the node's open connections (kernel counts, `ss -ti`).",
        "Defaults: p2p.record_refresh_s 120, p2p.conn_low/conn_high 3/5.",
        note,
        "",
        "| N | nodes | hub READY | last of N-1 READY (from their spawn) | all visible after last READY "
        "| connections settled after last READY | idle cores, all N | idle CPU per node | messages/s per node "
        "| bytes/s per node |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Floor: the bare P2PNode rows (no daemon on top). Goal: {GOAL}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["discovery", "rtt", "all"], default="all")
    ap.add_argument("--kind", choices=["daemons", "nodes", "both"], default="both")
    ap.add_argument("--sizes", default="5,10,20")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--exchanges", type=int, default=2000)
    ap.add_argument("--write", action="store_true")
    ap.add_argument(
        "--settle",
        type=float,
        default=IDLE_SETTLE_S,
        help="seconds after discovery before waiting for the connections to settle",
    )
    ap.add_argument("--echo-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.echo_child:
        asyncio.run(echo_child())
        return
    os.environ["DMS_BENCH_SETTLE_S"] = str(args.settle)
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    sections = []
    if args.part in ("rtt", "all"):
        sections.append(rtt_section(args.exchanges))
        print(sections[-1], flush=True)
    if args.part in ("discovery", "all"):
        kinds = ["daemons", "nodes"] if args.kind == "both" else [args.kind]
        sizes = [int(s) for s in args.sizes.split(",")]
        sections.append(discovery_section(kinds, sizes, args.runs))
        print(sections[-1], flush=True)
    if args.write:
        for text in sections:
            append_results(text)


if __name__ == "__main__":
    main()
