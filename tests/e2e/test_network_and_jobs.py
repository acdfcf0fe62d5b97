"""Two real daemons on loopback: discovery, capacity updates, liveness, and container jobs from SP to CP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import aiodocker
import aiohttp
import pytest

from tests.e2e.nodes import cp_and_sp
from tests.procs import DmsProcess, post, run_cli, wait_for

HB = 1.0  # p2p.heartbeat_s of the test configs (tests/procs.py)


def post_error(d: DmsProcess, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    try:
        post(d, path, body)
    except urllib.error.HTTPError as e:
        body = json.load(e)
        return e.code, {"code": body["code"], "message": body["error"], "details": body["details"]}
    raise AssertionError("the request was accepted")


def known(d: DmsProcess) -> dict[str, dict[str, Any]]:
    return {p["peer_id"]: p for p in d.get("/api/v1/peers/dht/dump")}


@pytest.fixture
def pair(dms_process: Callable[..., DmsProcess]) -> Iterator[tuple[DmsProcess, DmsProcess]]:
    yield cp_and_sp(dms_process)


def job(cmd: str, **res: Any) -> dict[str, Any]:
    return {
        "image": "dms-test/busybox:1",
        "command": ["sh", "-c", cmd],
        "resources": {"cpu_mhz": 500, "cores": 0.5, "memory_mb": 64, **res},
        "max_price": 10**18,
        "duration_s": 60,
    }


async def run_job(sp: DmsProcess, spec: dict[str, Any], until: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Quote, pay (send-status success), collect frames through the end (or `until`)."""
    quote = post(sp, "/run/request-service", spec)
    frames: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        assert (await ws.receive_json(timeout=10))["action"] == "connected"
        await ws.send_json(
            {"action": "send-status", "message": {"transaction_type": "fund", "transaction_status": "success"}}
        )
        while True:
            frame = await ws.receive_json(timeout=90)
            frames.append(frame)
            if frame["action"] in ("job-completed", "job-failed", "error") or frame["action"] == until:
                return quote["job_id"], frames


async def containers_of(job_id: str) -> list[Any]:
    async with aiodocker.Docker() as docker:
        return list(await docker.containers.list(all=True, filters=json.dumps({"label": [f"dms.job={job_id}"]})))


async def removed(job_id: str, within_s: float = 10.0) -> None:
    """A job's ended container is removed in the background after its result went out."""
    deadline = time.monotonic() + within_s
    while await containers_of(job_id):
        assert time.monotonic() < deadline, f"the container of job {job_id} was not removed"
        await asyncio.sleep(0.05)  # polling interval


def test_discovery_and_capacity_updates(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    cp_id, sp_id = cp.get("/api/v1/peers/self")["peer_id"], sp.get("/api/v1/peers/self")["peer_id"]
    wait_for(lambda: sp_id in known(cp), 10, "the CP sees the SP")
    seen = known(sp)[cp_id]
    status = cp.get("/api/v1/onboarding/status")
    assert seen["capacity"]["cpu_mhz"] == status["free"]["cpu"]
    assert seen["capacity"]["memory_mb"] == status["free"]["memory"]
    assert seen["capacity"]["executors"] == ["docker", "wasm"] and seen["capacity"]["ntx_price"] == 7
    assert cp_id in {p["peer_id"] for p in sp.get("/api/v1/peers")}
    assert sp.get(f"/api/v1/peers/ping/{cp_id}")["rtt_ms"] > 0
    wait_for(lambda: known(sp)[cp_id]["rtt_ms"], 10, "the SP measured the CP's RTT")
    assert 0 < metric(sp, f'dms_peer_rtt_seconds{{peer_id="{cp_id}"}}') < 1

    new_cpu = status["reserved"]["cpu"] - 100
    t0 = time.monotonic()
    post(cp, "/onboarding/resource-config", {"cpu": new_cpu})
    wait_for(lambda: known(sp)[cp_id]["capacity"]["cpu_mhz"] == new_cpu, 2, "the change reaches the SP")
    assert time.monotonic() - t0 < 2


def test_a_killed_peer_leaves_and_comes_back_with_its_id(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    cp_id = cp.get("/api/v1/peers/self")["peer_id"]
    cp.kill9()
    t0 = time.monotonic()
    wait_for(lambda: cp_id not in known(sp), 3 * HB + 2, "the killed CP leaves the table")
    assert time.monotonic() - t0 <= 3 * HB + 1
    cp.start()
    assert cp.get("/api/v1/peers/self")["peer_id"] == cp_id
    wait_for(lambda: cp_id in known(sp), 20, "the restarted CP is back")


async def test_job_from_sp_to_cp(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    job_id, frames = await run_job(sp, job("echo hello from the CP; echo to stderr >&2"))
    actions = [f["action"] for f in frames]
    assert actions[:2] == ["job-submitted", "deployment-response"] and actions[-1] == "job-completed"
    assert "log-stream-response" in actions
    assert all(f["job_id"] == job_id for f in frames)
    logs = [f for f in frames if f["action"] == "log-stream-response"]
    assert all(len({"stdout", "stderr"} & f.keys()) == 1 and "message" not in f for f in logs)  # NuNet's frame
    assert "hello from the CP" in "".join(f.get("stdout", "") for f in logs)
    assert "to stderr" in "".join(f.get("stderr", "") for f in logs)
    assert frames[-1]["detail"] == {"exit_code": 0}
    await removed(job_id)
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "completed"
    wait_for(lambda: released(cp), 10, "the job's resources released")


def released(cp: DmsProcess) -> bool:
    """Whether all of the CP's reserved capacity is free again (a job's is released just after its result)."""
    status = cp.get("/api/v1/onboarding/status")
    return bool(status["free"] == status["reserved"])


async def test_failures_limits_and_refusals(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    _, frames = await run_job(sp, job("exit 3"))
    assert frames[-1]["action"] == "job-failed" and frames[-1]["detail"]["exit_code"] == 3

    _, frames = await run_job(sp, job("x=aaaaaaaa; while true; do x=$x$x; done", memory_mb=32))
    assert frames[-1]["action"] == "job-failed" and "out of memory" in frames[-1]["message"]

    wait_for(lambda: released(cp), 10, "the failed jobs' resources released")  # just after their results
    free = cp.get("/api/v1/onboarding/status")["free"]
    code, err = post_error(sp, "/run/request-service", job("true", memory_mb=free["memory"] + 1))
    assert code == 409 and err["code"] == "no_provider" and "MB free" in err["message"]


async def test_cp_killed_mid_job(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    job_id, _frames = await run_job(sp, job("echo started; sleep 120"), until="log-stream-response")
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "subscribe", "job_id": job_id})
        cp.kill9()
        t0 = time.monotonic()
        while (frame := await ws.receive_json(timeout=30))["action"] != "job-failed":
            pass
        assert time.monotonic() - t0 <= 3 * HB + 2
        assert "compute provider lost" in frame["message"]
    cp.start()  # it adopts the container, and stops it when the SP, which gave up, does not re-attach

    async def stopped() -> bool:
        status = cp.get("/api/v1/onboarding/status")
        return await containers_of(job_id) == [] and status["free"] == status["reserved"]

    deadline = time.monotonic() + 3 * HB + 20
    while not await stopped():
        assert time.monotonic() < deadline, "the orphaned job was not stopped"
        await asyncio.sleep(0.2)  # polling interval


async def test_cancel_by_websocket_and_rest(pair: tuple[DmsProcess, DmsProcess]) -> None:
    _cp, sp = pair
    job_id, _ = await run_job(sp, job("echo up; sleep 120"), until="log-stream-response")
    post(sp, f"/run/jobs/{job_id}/cancel")
    wait_for(lambda: sp.get(f"/api/v1/run/jobs/{job_id}")["state"] == "cancelled", 20, "REST cancel")

    job_id, _ = await run_job(sp, job("echo up; sleep 120"), until="log-stream-response")
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "cancel", "job_id": job_id})
        while (frame := await ws.receive_json(timeout=30))["action"] != "job-failed":
            pass
        assert frame["message"] == "cancelled" and frame["job_id"] == job_id
    await removed(job_id)


async def test_websocket_bad_frames_and_origin(pair: tuple[DmsProcess, DmsProcess]) -> None:
    _, sp = pair
    async with aiohttp.ClientSession() as s:
        async with s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
            await ws.receive_json(timeout=10)
            for bad, says in [
                ("not json", "not valid JSON"),
                ("[1]", "JSON object"),
                (json.dumps({"action": "dance"}), "unknown action"),
                (json.dumps({"action": "subscribe"}), "needs a job_id"),
                (json.dumps({"action": "subscribe", "job_id": "nope"}), "no job nope"),
                (json.dumps({"action": "send-status", "message": {"transaction_type": "fund"}}), "transaction_status"),
                (json.dumps({"action": "send-status", "message": "x" * 70_000}), "over the 65536 byte limit"),
            ]:
                await ws.send_str(bad)
                frame = await ws.receive_json(timeout=10)
                assert frame["action"] == "error" and says in frame["message"], (bad[:40], frame)
            await ws.send_bytes(b"\x00")
            assert "binary" in (await ws.receive_json(timeout=10))["message"]
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await s.ws_connect(sp.url + "/api/v1/run/deploy", headers={"Origin": "http://evil.example"})
        assert exc.value.status == 403


def test_cli_run_peers_and_jobs(pair: tuple[DmsProcess, DmsProcess]) -> None:
    cp, sp = pair
    cp_id = cp.get("/api/v1/peers/self")["peer_id"]
    out = run_cli("peer", "list", "-d", dms=sp.url)
    assert out.returncode == 0 and cp_id[:12] in out.stdout and "docker" in out.stdout
    me = run_cli("peer", "self", dms=cp.url).stdout
    assert cp_id in me and "docker: available" in me and "Advertising" in me
    assert "ms" in run_cli("peer", "ping", cp_id, dms=sp.url).stdout

    ok = run_cli("run", "--memory", "64", "--", "sh", "-c", "echo hi from the cli", dms=sp.url)
    assert ok.returncode == 0, ok.stderr
    assert "hi from the cli" in ok.stdout and "job-completed" in ok.stdout
    failed = run_cli("run", "--memory", "64", "--", "sh", "-c", "exit 4", dms=sp.url)
    assert failed.returncode == 4 and "exited with code 4" in failed.stdout
    listing = run_cli("jobs", dms=sp.url)
    assert listing.stdout.count("completed") >= 1 and "failed" in listing.stdout
    newest = sp.get("/api/v1/run/jobs")["jobs"][0]
    shown = run_cli("job", newest["job_id"], dms=sp.url)
    assert shown.returncode == 0 and "exited with code 4" in shown.stdout and newest["job_id"] in shown.stdout
    ended = run_cli("cancel", newest["job_id"], dms=sp.url)
    assert ended.returncode == 1 and "already ended" in ended.stderr
    bad = run_cli("run", "--memory", "9999999", "--", "true", dms=sp.url)
    assert bad.returncode == 1 and "no compute provider can run this job" in bad.stderr


def metric(d: DmsProcess, name: str) -> float:
    with urllib.request.urlopen(d.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert values, f"{name} not in /metrics"
    return values[0]


def test_garbage_on_the_p2p_port_is_counted_and_the_node_keeps_serving(pair: tuple[DmsProcess, DmsProcess]) -> None:
    import socket

    cp, sp = pair
    cp_id = cp.get("/api/v1/peers/self")["peer_id"]
    assert metric(sp, "dms_p2p_peers_known") == 1 and metric(sp, "dms_p2p_records_accepted_total") >= 1
    host, port = cp.get("/api/v1/peers/self")["addrs"][0].split("/")[2:5:2]
    before = metric(cp, "dms_p2p_bad_handshakes_total")
    with socket.create_connection((host, int(port)), timeout=5) as s, contextlib.suppress(ConnectionResetError):
        s.sendall(b"GET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 8)
        s.settimeout(10)
        while s.recv(4096):  # until the node hangs up on us
            pass
    wait_for(lambda: metric(cp, "dms_p2p_bad_handshakes_total") > before, 10, "the garbage is counted")
    assert sp.get(f"/api/v1/peers/ping/{cp_id}")["rtt_ms"] > 0
    assert cp_id in known(sp)


async def test_restarted_sp_reattaches_and_a_dashboard_resubscribes(pair: tuple[DmsProcess, DmsProcess]) -> None:
    _, sp = pair
    job_id, _ = await run_job(sp, job("echo first; sleep 4; echo second"), until="log-stream-response")
    sp.kill9()
    sp.start()
    frames: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s, s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
        await ws.receive_json(timeout=10)
        await ws.send_json({"action": "subscribe", "job_id": job_id})
        while (frame := await ws.receive_json(timeout=60))["action"] not in ("job-completed", "job-failed"):
            frames.append(frame)
    assert frame["action"] == "job-completed", frame
    stdout = "".join(f.get("stdout", "") for f in frames if f["action"] == "log-stream-response")
    assert stdout == "first\nsecond\n"  # nothing lost, nothing twice
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs))


async def test_hostile_deployment_requests_are_refused(pair: tuple[DmsProcess, DmsProcess], tmp_path: Any) -> None:
    """A peer speaking /dms/deployment/1.0.0 directly asks for what the REST shape cannot express."""
    from dms.jobs.protocol import PROTOCOL, Deploy, Payment, Sandbox, decode_to_requester, encode
    from dms.jobs.spec import JobSpec
    from dms.network import NetworkSettings, P2PNode
    from dms.network.errors import StreamClosed

    cp, _ = pair
    me = cp.get("/api/v1/peers/self")
    node = P2PNode(
        NetworkSettings(listen_addresses=("/ip4/127.0.0.1/tcp/0",), bootstrap_peers=(me["addrs"][0],), heartbeat_s=1),
        identity_path=tmp_path / "rogue.key",
        version="rogue",
    )
    await node.start()
    try:
        spec = JobSpec.model_validate(job("cat /etc/shadow"))
        for i, sandbox in enumerate(
            [
                Sandbox(privileged=True),
                Sandbox(mounts=["/:/host"]),
                Sandbox(network_mode="host"),
                Sandbox(cap_add=["SYS_ADMIN"]),
            ]
        ):
            stream = await node.open_stream(me["peer_id"], PROTOCOL)
            deploy = Deploy(type="deploy", job_id=f"rogue{i}", spec=spec, sandbox=sandbox, payment=Payment(price=0))
            await stream.send(encode(deploy))
            answer = decode_to_requester(await stream.receive(10))
            await stream.close()
            assert answer.type == "rejected" and "not allowed" in answer.reason, answer
            assert await containers_of(f"rogue{i}") == []
        stream = await node.open_stream(me["peer_id"], PROTOCOL)
        await stream.send(b"this is not json\n")
        with pytest.raises(StreamClosed):  # the provider hangs up
            await stream.receive(10)
        await stream.close()
    finally:
        await node.stop()
    assert cp.get("/api/v1/onboarding/status")["free"] == cp.get("/api/v1/onboarding/status")["reserved"]
