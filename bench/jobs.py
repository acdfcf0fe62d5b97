"""Job figures: end-to-end latency of one small container job through two daemons, and throughput of 50 at once.

(a) Latency. An SP and a CP (real `nunet-dms` processes on loopback, p2p.heartbeat_s 2, otherwise default
settings; onboarded as in tests/e2e `pair`). One job after another: POST /api/v1/run/request-service, then
`send-status` (fund, success) on an already open /api/v1/run/deploy websocket, until the `job-completed` frame.
The job is `busybox true` (command ["true"]). The floor, interleaved with it: the same container run directly
through the Docker API (aiodocker: create with dms.executor.docker.container_config, start, wait, delete).
Where the time goes: the client's timestamps of the quote and of each frame, beside the Docker engine's own
event times (create, start, die, destroy) of the job's container.

(b) Throughput. One SP and two CPs, each CP onboarded with room for 25 of the jobs (CPU is the binding
reservation: 25 x 50 MHz). 50 jobs requested at once; jobs/s from the first request to the last job's end,
beside the Docker engine running the same 50 containers alone, concurrently through aiodocker.

Usage: .venv/bin/python bench/jobs.py [--part latency|burst|all] [--jobs N] [--rounds N] [--write]
"""

from __future__ import annotations

import argparse

from common import append_results
from jobs_burst import burst_section
from jobs_latency import latency_section


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["latency", "burst", "all"], default="all")
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--warm", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    sections = []
    if args.part in ("latency", "all"):
        sections.append(latency_section(args.jobs, args.warm))
        print(sections[-1], flush=True)
    if args.part in ("burst", "all"):
        sections.append(burst_section(args.rounds))
        print(sections[-1], flush=True)
    if args.write:
        for text in sections:
            append_results(text)


if __name__ == "__main__":
    main()
