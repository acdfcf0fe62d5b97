"""A running job's peers are never trimmed: two real daemons (SP, CP) over their high water mark, a job between them."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Callable

from tests.e2e.test_daemon_process import onboard
from tests.e2e.test_network_and_jobs import job, run_job
from tests.network.node_proc import NodeProc
from tests.procs import DmsProcess, post, wait_for

Spawn = Callable[..., NodeProc]
HB = 0.5  # grace for new connections: 10 heartbeats = 5 s; a trim is due every 2 heartbeats


def trimmed(d: DmsProcess) -> float:
    with urllib.request.urlopen(d.url + "/metrics", timeout=10) as r:
        lines = r.read().decode().splitlines()
    return next(float(x.split()[-1]) for x in lines if x.startswith("dms_p2p_connections_trimmed_total "))


def connected(d: DmsProcess) -> set[str]:
    return {p["peer_id"] for p in d.get("/api/v1/peers")}


async def test_the_peers_of_a_running_job_are_never_trimmed(
    spawn: Spawn, dms_process: Callable[..., DmsProcess]
) -> None:
    """Marks 1/1 on both daemons: each trims every connection it may, down to one. Both reach `hub` (a
    bootstrap peer: never trimmed) and each other (the job's dial). A leaf then connects to both: once they
    have trimmed it, the SP<->CP connection (older, so out of its grace too) must still be there, never closed.
    Without protection each daemon trims it (the only other candidate besides the leaf)."""
    hub = spawn("hub", advert=None)
    p2p = {"bootstrap_peers": [hub.addr], "heartbeat_s": HB, "conn_low": 1, "conn_high": 1}
    cp = dms_process("cp", p2p=p2p).start()
    sp = dms_process("sp", p2p=p2p).start()
    onboard(cp, 0.5)
    onboard(sp, 0.2)
    cp_id, sp_id = (d.get("/api/v1/peers/self")["peer_id"] for d in (cp, sp))
    wait_for(lambda: cp_id in {p["peer_id"] for p in sp.get("/api/v1/peers/dht/dump")}, 15, "the SP sees the CP")

    job_id, frames = await run_job(sp, job("sleep 60"), until="job-submitted")
    assert frames[-1]["action"] == "job-submitted", frames
    wait_for(lambda: sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "running", 30, "the job runs")
    assert cp_id in connected(sp) and sp_id in connected(cp)

    leaf = spawn("leaf", bootstrap=(cp.get("/api/v1/peers/self")["addrs"][0], sp.get("/api/v1/peers/self")["addrs"][0]))
    wait_for(lambda: leaf.peer_id in connected(cp) and leaf.peer_id in connected(sp), 15, "the leaf connects")
    wait_for(lambda: trimmed(cp) >= 1 and trimmed(sp) >= 1, 30, "both daemons trim the leaf")

    assert cp_id in connected(sp) and sp_id in connected(cp)
    assert f"closing the connection to {sp_id}" not in cp.log()
    assert f"closing the connection to {cp_id}" not in sp.log()
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "running"

    post(sp, f"/run/jobs/{job_id}/cancel")  # leave no container behind
    await asyncio.to_thread(
        wait_for, lambda: sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "cancelled", 30, "the job is cancelled"
    )
