"""WASM jobs end to end: an SP dispatches to a CP that has no Docker engine, over libp2p (two daemons)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests import wasm_modules as m
from tests.e2e.test_daemon_process import onboard
from tests.e2e.test_network_and_jobs import known, post_error, run_job
from tests.procs import DmsProcess, free_port, run_cli, wait_for


def wasm_job(sha: str, *args: str, memory_mb: int = 16, **extra: Any) -> dict[str, Any]:
    return {
        "executor": "wasm",
        "module": sha,
        "args": list(args),
        "resources": {"cpu_mhz": 100, "cores": 0.5, "memory_mb": memory_mb},
        "max_price": 10**18,
        "duration_s": 30,
        **extra,
    }


def test_wasm_job_from_sp_to_a_docker_less_cp(dms_process: Callable[..., DmsProcess], tmp_path: Path) -> None:
    # A docker host where nothing listens: this CP has no Docker engine.
    cp = dms_process("cp", docker={"host": f"tcp://127.0.0.1:{free_port()}"}).start()
    onboard(cp, 0.5)
    status = cp.get("/api/v1/onboarding/status")["executor"]
    assert status["available"] and status["kinds"]["wasm"] is None and status["kinds"]["docker"]
    me = cp.get("/api/v1/peers/self")
    sp = dms_process("sp", p2p={"bootstrap_peers": [me["addrs"][0]]}).start()
    onboard(sp, 0.2)
    seen = wait_for(lambda: known(sp).get(me["peer_id"]), 15, "the SP sees the CP")
    assert seen["capacity"]["executors"] == ["wasm"]

    # The module goes into the SP's registry from the CLI; the CP has never seen it.
    (tmp_path / "printer.wat").write_text(m.PRINTER)
    added = run_cli("module", "add", str(tmp_path / "printer.wat"), "-d", "prints args", dms=sp.url)
    assert added.returncode == 0, added.stderr
    listed = run_cli("module", "ls", dms=sp.url)
    assert "printer" in listed.stdout and "prints args" in listed.stdout
    sha = sp.get("/api/v1/modules/printer")["sha256"]

    job_id, frames = asyncio.run(run_job(sp, wasm_job(sha, "hello", "wasm", env={"WHO": "cp"})))
    actions = [f["action"] for f in frames]
    assert actions[-1] == "job-completed" and frames[-1]["detail"]["exit_code"] == 0, frames
    assert actions.index("job-submitted") < actions.index("deployment-response") < actions.index("job-completed")
    stdout = log_text(frames, "stdout")
    assert stdout.splitlines()[1:3] == ["hello", "wasm"] and "WHO=cp" in stdout.splitlines(), frames
    assert log_text(frames, "stderr") == "done\n"
    assert sp.get(f"/api/v1/run/jobs/{job_id}")["compute_provider"] == me["peer_id"]

    # The memory limit, end to end: job-failed says so.
    grower = post_module(sp, "grower", m.wasm(m.GROWER))
    _, frames = asyncio.run(run_job(sp, wasm_job(grower, memory_mb=8)))
    assert frames[-1]["action"] == "job-failed", frames
    assert "memory limit was reached (8 MB" in frames[-1]["message"]

    # A container job finds no provider: the CP offers wasm only, and matching says so.
    code, err = post_error(sp, "/run/request-service", {**wasm_job(sha), "executor": "docker", "module": None,
                                                          "args": [], "image": "dms-test/busybox:1"})  # fmt: skip
    assert code == 409 and f"{me['peer_id']}: offers no docker executor" in err["message"]

    # `nunet run --wasm NAME -- ARGS` exits with the module's code and prints its output.
    ran = run_cli(
        "run",
        "--wasm",
        "printer",
        "--fuel",
        "10000000",
        "-m",
        "16",
        "-c",
        "100",
        "--",
        "from",
        "cli",
        dms=sp.url,
        timeout=90,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "from" in ran.stdout and "cli" in ran.stdout
    missing = run_cli("run", "--wasm", "nosuch", "--", "x", dms=sp.url)
    assert missing.returncode == 1 and "no module named nosuch" in missing.stderr
    removed = run_cli("module", "rm", "grower", dms=sp.url)
    assert removed.returncode == 0 and "grower" not in run_cli("module", "ls", dms=sp.url).stdout


def log_text(frames: list[dict[str, Any]], stream: str) -> str:
    """The job's output on `stream`, whether a frame carries it at the top level (NuNet) or in `message`."""
    logs = [f for f in frames if f["action"] == "log-stream-response"]
    return "".join(str(f.get(stream) or (f.get("message") or {}).get(stream) or "") for f in logs)


def post_module(d: DmsProcess, name: str, data: bytes) -> str:
    import json
    import urllib.request

    req = urllib.request.Request(f"{d.url}/api/v1/modules?name={name}", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return str(json.load(r)["sha256"])
    except urllib.error.HTTPError as e:
        raise AssertionError(e.read()) from None


def test_an_engine_that_answers_after_start_is_offered(dms_process: Callable[..., DmsProcess], tmp_path: Path) -> None:
    """A CP started before its Docker engine answers (a booting machine) offers container jobs once it does,
    without a restart: the executors are asked again while one has a problem."""
    sock = tmp_path / "docker.sock"  # nothing there yet; later a link to the machine's engine
    cp = dms_process("cp", docker={"host": f"unix://{sock}"}).start()
    onboard(cp, 0.5)
    status = cp.get("/api/v1/onboarding/status")["executor"]
    assert status["kinds"]["docker"] and status["kinds"]["wasm"] is None, status
    assert cp.get("/api/v1/peers/self")["advert"]["executors"] == ["wasm"]

    sock.symlink_to("/var/run/docker.sock")
    wait_for(
        lambda: cp.get("/api/v1/onboarding/status")["executor"]["kinds"]["docker"] is None,
        30,
        "the engine found without a restart",
    )
    wait_for(
        lambda: sorted(cp.get("/api/v1/peers/self")["advert"]["executors"]) == ["docker", "wasm"],
        10,
        "the advert lists docker",
    )
