"""Job inputs and outputs between real daemons and a real Docker engine.

Inputs: an uploaded artifact and a URL on 127.0.0.1 are readable and read-only under /inputs; a missing
artifact, a refused address or an oversize URL fails the job before start, with the reason. Outputs: what
the job leaves in /outputs reaches the SP as a tar, byte-identical, through REST and `nunet job get`.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from dms.app import Daemon
from tests.conftest import PAYOUT, make_settings
from tests.integration.test_artifacts import connected, upload
from tests.procs import eventually, run_cli

WEB_TEXT = b"served over http on loopback\n"


@pytest.fixture
async def web_server() -> AsyncIterator[str]:
    async def small(_: web.Request) -> web.Response:
        return web.Response(body=WEB_TEXT)

    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"\0" * (2 * 1024 * 1024))

    app = web.Application()
    app.router.add_get("/a.txt", small)
    app.router.add_get("/big", big)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


async def onboard(d: Daemon, share: float) -> None:
    async with aiohttp.ClientSession(base_url=d.url) as s:
        async with s.get("/api/v1/onboarding/provisioned") as r:
            m = await r.json()
        body = {"memory": int(m["memory"] * share), "cpu": int(m["cpu"] * share), "channel": "nunet-test",
                "payment_addr": PAYOUT, "ntx_price": 7}  # fmt: skip
        async with s.post("/api/v1/onboarding/onboard", json=body) as r:
            assert r.status == 200, await r.text()


@pytest.fixture
async def cp_sp(tmp_path: Path) -> AsyncIterator[tuple[Daemon, Daemon]]:
    limits = {"allow_addresses": ["127.0.0.1/32"], "url_max_mb": 1, "outputs_max_mb": 1}
    cp = Daemon(make_settings(tmp_path / "cp", artifacts=limits))
    await cp.start()
    assert cp.node is not None
    sp = Daemon(make_settings(tmp_path / "sp", p2p={"bootstrap_peers": [cp.node.addrs[0]]}))
    try:
        await sp.start()
        assert sp.node is not None
        await onboard(cp, 0.5)
        await onboard(sp, 0.2)
        await connected(sp.node, cp.node)
        cp_id = cp.node.peer_id

        async def sees_cp() -> bool:
            assert sp.node is not None
            return cp_id in {p.peer_id for p in sp.node.peers()}

        await eventually(sees_cp, 15, "the SP sees the CP's capacity")
        yield cp, sp
    finally:
        await sp.stop()
        await cp.stop()


def job(cmd: str, inputs: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "image": "dms-test/busybox:1", "command": ["sh", "-c", cmd],
        "resources": {"cpu_mhz": 500, "cores": 0.5, "memory_mb": 64},
        "max_price": 10**18, "duration_s": 60, "inputs": inputs,
    }  # fmt: skip


async def run(sp: Daemon, spec: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """Quote, pay (mode none), follow the frames to the end; the frames and the job's stdout."""
    async with aiohttp.ClientSession() as s:
        async with s.post(sp.url + "/api/v1/run/request-service", json=spec) as r:
            assert r.status == 200, await r.text()
        frames: list[dict[str, Any]] = []
        async with s.ws_connect(sp.url + "/api/v1/run/deploy") as ws:
            assert (await ws.receive_json(timeout=10))["action"] == "connected"
            status = {"transaction_type": "fund", "transaction_status": "success"}
            await ws.send_json({"action": "send-status", "message": status})
            while True:
                frame = await ws.receive_json(timeout=90)
                frames.append(frame)
                if frame["action"] in ("job-completed", "job-failed", "error"):
                    break
    out = ""
    for f in frames:
        if f["action"] == "log-stream-response":
            out += f.get("stdout") or (f.get("message") or {}).get("stdout", "")
    return frames, out


async def test_inputs_are_fetched_mounted_read_only_or_fail_the_job(
    cp_sp: tuple[Daemon, Daemon], web_server: str
) -> None:
    cp, sp = cp_sp
    uploaded = b"uploaded to the SP\n"
    sha = (await upload(sp.url, uploaded))["sha256"]
    cmd = (
        "cat /inputs/up.txt /inputs/dir/web.txt; "
        "if touch /inputs/new 2>/dev/null || (echo x >> /inputs/up.txt) 2>/dev/null; "
        "then echo WRITABLE; else echo READ-ONLY; fi"
    )
    frames, out = await run(sp, job(cmd, [{"source": sha, "path": "up.txt"},
                                          {"source": web_server + "/a.txt", "path": "dir/web.txt"}]))  # fmt: skip
    assert frames[-1]["action"] == "job-completed", frames[-1]
    assert out == uploaded.decode() + WEB_TEXT.decode() + "READ-ONLY\n"
    # the CP keeps the verified blobs; the job's folder goes (released just after the result is out)
    async with aiohttp.ClientSession() as s, s.get(f"{cp.url}/api/v1/artifacts/{sha}") as r:
        assert await r.read() == uploaded

    async def folder_gone() -> bool:
        return not any((cp.settings.general.data_dir / "jobs").iterdir())

    await eventually(folder_gone, 10, "the job's folder removed")

    missing = hashlib.sha256(b"nobody has this").hexdigest()
    for source, why in [
        (missing, "no artifact"),
        (web_server + "/big", "over the input limit"),
        ("http://[::1]:9/x", "loopback address"),
        (web_server + "/nothing", "404"),
    ]:
        frames, out = await run(sp, job("echo SHOULD NOT RUN", [{"source": source, "path": "x"}]))
        assert frames[-1]["action"] == "job-failed", frames[-1]
        assert why in frames[-1]["message"] and "input 1 (x)" in frames[-1]["message"]
        assert "SHOULD NOT RUN" not in out


WRITE_OUTPUTS = (
    "mkdir -p /outputs/sub && seq 1 20000 > /outputs/sub/numbers.txt && printf 'done' > /outputs/result.txt "
    "&& ln -s result.txt /outputs/link && echo wrote"
)


async def test_outputs_reach_the_sp_as_a_tar(cp_sp: tuple[Daemon, Daemon], tmp_path: Path) -> None:
    _, sp = cp_sp
    frames, out = await run(sp, job(WRITE_OUTPUTS, []))
    end = frames[-1]
    assert end["action"] == "job-completed" and out == "wrote\n", end
    outputs = end["detail"]["outputs"]
    assert end["detail"]["exit_code"] == 0 and set(outputs) == {"sha256", "size"}
    job_id = end["job_id"]
    numbers = "".join(f"{i}\n" for i in range(1, 20001)).encode()
    async with aiohttp.ClientSession(base_url=sp.url) as s:
        async with s.get(f"/api/v1/run/jobs/{job_id}") as r:
            assert (await r.json())["outputs"] == outputs
        async with s.get(f"/api/v1/run/jobs/{job_id}/outputs") as r:
            assert r.status == 200 and r.content_type == "application/x-tar"
            body = await r.read()
    assert hashlib.sha256(body).hexdigest() == outputs["sha256"] and len(body) == outputs["size"]
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["link", "result.txt", "sub", "sub/numbers.txt"]
        assert tar.getmember("link").issym()
        numbers_file = tar.extractfile("sub/numbers.txt")
        assert numbers_file is not None and numbers_file.read() == numbers
    # the CLI downloads and unpacks the same bytes
    dest = tmp_path / "got"
    res = await asyncio.to_thread(run_cli, "job", "get", job_id, "-o", str(dest), dms=sp.url)  # daemon on this loop
    assert res.returncode == 0, res.stderr
    assert (dest / "sub" / "numbers.txt").read_bytes() == numbers and (dest / "link").read_text() == "done"

    # past outputs_max_mb (1 MiB) the job is stopped and fails saying why; nothing is kept
    frames, _ = await run(sp, job("dd if=/dev/zero of=/outputs/big bs=64k count=64; sleep 30", []))
    end = frames[-1]
    assert end["action"] == "job-failed" and "/outputs" in end["message"] and "outputs" not in end["detail"], end
    async with aiohttp.ClientSession(base_url=sp.url) as s, s.get(f"/api/v1/run/jobs/{end['job_id']}/outputs") as r:
        assert r.status == 404


COUNTER = (
    "i=$(cat /workspace/counter 2>/dev/null || echo 0); echo start $i; "
    "while [ $i -lt 30 ]; do i=$((i+1)); echo $i > /workspace/c.tmp; mv /workspace/c.tmp /workspace/counter; "
    "sleep 0.1; done; echo counted"
)


def counter_in(tar_bytes: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        f = tar.extractfile("counter")
        assert f is not None
        return int(f.read())


async def test_checkpoints_reach_the_sp_and_a_rollback_restores_one(cp_sp: tuple[Daemon, Daemon]) -> None:
    _, sp = cp_sp
    spec = {**job(COUNTER, []), "checkpoint": {"path": "/workspace", "interval_s": 1}}
    frames, out = await run(sp, spec)
    assert frames[-1]["action"] == "job-completed" and out == "start 0\ncounted\n", frames[-1]
    job_id = frames[-1]["job_id"]
    async with aiohttp.ClientSession(base_url=sp.url) as s:

        async def final_recorded() -> list[dict[str, Any]] | None:
            async with s.get(f"/api/v1/run/jobs/{job_id}/checkpoints") as r:
                cps: list[dict[str, Any]] = (await r.json())["checkpoints"]
            # each is fetched in its own task: an earlier one may still be on its way when the final is in
            every = [c["seq"] for c in cps] == list(range(1, len(cps) + 1))
            return cps if cps and cps[-1]["final"] and every else None

        cps = await eventually(final_recorded, 20, "every checkpoint reaches the SP, the final one last")
        assert len(cps) >= 2, cps
        assert all(c["job_id"] == job_id for c in cps) and not any(c["final"] for c in cps[:-1])
        counters = []
        for c in cps:
            async with s.get(f"/api/v1/artifacts/{c['sha256']}") as r:  # held by the SP itself
                body = await r.read()
            assert hashlib.sha256(body).hexdigest() == c["sha256"]
            counters.append(counter_in(body))
        assert counters == sorted(counters) and counters[0] < 30 and counters[-1] == 30, counters
        async with s.get("/api/v1/run/checkpoints") as r:
            assert [c for c in (await r.json())["checkpoints"] if c["job_id"] == job_id] == cps
        bad = {**job("true", []), "checkpoint": {"path": "/proc/x", "interval_s": 1}}
        async with s.post("/api/v1/run/request-service", json=bad) as r:
            assert r.status == 400 and "checkpoint.path" in (await r.json())["error"]

        # rollback: a new run of the ended job from checkpoint 1 continues from that counter
        async with s.post(f"/api/v1/run/jobs/{job_id}/resume", json={"checkpoint": 99}) as r:
            assert r.status == 404 and "has no checkpoint 99" in (await r.json())["error"]
    res = await asyncio.to_thread(run_cli, "resume", job_id, "--checkpoint", "1", dms=sp.url)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"start {counters[0]}\ncounted\n" in res.stdout and "from checkpoint 1" in res.stdout


async def test_a_cancelled_job_leaves_a_final_checkpoint(cp_sp: tuple[Daemon, Daemon]) -> None:
    _, sp = cp_sp
    long_count = (
        "i=0; while [ $i -lt 900 ]; do i=$((i+1)); echo $i > /workspace/c.tmp; mv /workspace/c.tmp /workspace/counter; "
        "if [ $i = 5 ]; then echo five; fi; sleep 0.1; done"
    )
    spec = {**job(long_count, []), "checkpoint": {"path": "/workspace", "interval_s": 60}}
    async with aiohttp.ClientSession(base_url=sp.url) as s:
        async with s.post("/api/v1/run/request-service", json=spec) as r:
            job_id = (await r.json())["job_id"]
        async with s.ws_connect("/api/v1/run/deploy") as ws:
            await ws.receive_json(timeout=10)
            status = {"transaction_type": "fund", "transaction_status": "success"}
            await ws.send_json({"action": "send-status", "job_id": job_id, "message": status})
            seen = ""
            while "five" not in seen:  # the counter has reached 5
                frame = await ws.receive_json(timeout=60)
                if frame["action"] == "log-stream-response":
                    seen += frame.get("stdout", "")
            async with s.post(f"/api/v1/run/jobs/{job_id}/cancel") as r:
                assert r.status == 200
            while (frame := await ws.receive_json(timeout=60))["action"] not in ("job-completed", "job-failed"):
                pass
        assert frame["message"] == "cancelled"

        async def final() -> list[dict[str, Any]] | None:
            async with s.get(f"/api/v1/run/jobs/{job_id}/checkpoints") as r:
                cps: list[dict[str, Any]] = (await r.json())["checkpoints"]
            return cps or None

        cps = await eventually(final, 20, "the checkpoint taken at the cancel reaches the SP")
        assert len(cps) == 1 and cps[0]["final"]  # none at the 60 s interval: only the one taken at the end
        async with s.get(f"/api/v1/artifacts/{cps[0]['sha256']}") as r:
            assert 5 <= counter_in(await r.read()) < 900


async def test_nunet_run_uploads_a_local_input(cp_sp: tuple[Daemon, Daemon], tmp_path: Path) -> None:
    _, sp = cp_sp
    src = tmp_path / "local.txt"
    src.write_text("from the user's disk\n")
    argv = ["run", "--memory", "64", "--input", f"{src}=data/x.txt", "--", "cat", "/inputs/data/x.txt"]
    res = await asyncio.to_thread(run_cli, *argv, dms=sp.url)  # the daemons are on this loop
    assert res.returncode == 0 and "from the user's disk" in res.stdout, res.stdout + res.stderr
    bad = await asyncio.to_thread(run_cli, "run", "--input", "no-equals-sign", "--", "true", dms=sp.url)
    assert bad.returncode == 2 and "SOURCE=PATH" in bad.stderr
