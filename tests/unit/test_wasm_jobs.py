"""WASM jobs in the pure parts: the job spec, matching and admission by executor, the advert, the
memory verdict, and the WASI import check (no Docker, no network, no processes)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from dms.capacity import advert_for
from dms.executor.modules import wasi_problem
from dms.executor.wasm import memory_verdict
from dms.executor.wasm_worker import PAGE, WorkerResult
from dms.jobs.admission import NodeView, SandboxAsk, refusal
from dms.jobs.spec import JobSpec
from dms.matching import Candidate, Needs, place
from dms.onboarding.record import Onboarding
from dms.onboarding.rules import Provisioned, Resources

SHA = "ab" * 32
RES = {"cpu_mhz": 100, "cores": 0.5, "memory_mb": 32}


def spec(**kw: object) -> JobSpec:
    return JobSpec.model_validate({"resources": RES, "max_price": 10**12, "duration_s": 10, **kw})


def test_spec_defaults_to_docker_and_a_wasm_job_names_its_module() -> None:
    assert spec(image="busybox:1").executor == "docker"
    w = spec(executor="wasm", module=SHA, args=["a", "b"], env={"K": "v"})
    assert (w.runs, w.argv) == (SHA, ["a", "b"])


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "a docker job needs an image"),
        ({"image": "busybox:1", "module": SHA}, "module, args and fuel are for wasm jobs"),
        ({"image": "busybox:1", "fuel": 1000}, "module, args and fuel are for wasm jobs"),
        ({"executor": "wasm", "module": SHA, "fuel": 0}, "fuel"),
        ({"executor": "wasm"}, "a wasm job needs a module"),
        ({"executor": "wasm", "module": SHA, "image": "busybox:1"}, "not image and command"),
        ({"executor": "wasm", "module": "not-a-hash"}, "module"),
        ({"executor": "wasm", "module": SHA, "resources": {**RES, "gpus": 1}}, "cannot use GPUs"),
        ({"executor": "lua", "image": "x"}, "executor"),
    ],
)
def test_spec_refuses_what_does_not_fit_its_executor(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError, match=expected):
        spec(**fields)


def cp(peer: str, executors: tuple[str, ...]) -> Candidate:
    return Candidate(peer, "nunet-test", True, 4000, 4, 4000, (), 1, executors)


def test_matching_filters_by_executor_with_the_reason() -> None:
    peers = [cp("wasm-only", ("wasm",)), cp("docker-only", ("docker",)), cp("both", ("docker", "wasm"))]
    needs = Needs("nunet-test", 100, 0.5, 32, 10, 10**12)
    wasm = place(peers, dataclasses.replace(needs, executor="wasm"))
    assert sorted(r.candidate.peer_id for r in wasm.ranked) == ["both", "wasm-only"]
    assert dict(wasm.rejected) == {"docker-only": "offers no wasm executor"}
    docker = place(peers, needs)
    assert dict(docker.rejected) == {"wasm-only": "offers no docker executor"}


NODE = NodeView(
    onboarded=True, available=True, executor_problem=None, free=Resources(4000, 4000, disk_mb=10_000),
    machine_cores=4, gpus=(),
    image_allowlist=(), image_present=True, working_executors=("wasm",),
)  # fmt: skip


def test_a_container_job_on_a_wasm_only_node_is_refused_with_the_reason() -> None:
    node = dataclasses.replace(NODE, executor_problem="the Docker engine does not answer")
    reason = refusal(node, spec(image="busybox:1"), SandboxAsk(), allow_network=False)
    assert reason == (
        "this provider runs wasm jobs only: no working docker executor (the Docker engine does not answer)"
    )
    assert refusal(NODE, spec(executor="wasm", module=SHA), SandboxAsk(), allow_network=False) is None


def test_a_wasm_job_is_refused_for_its_module() -> None:
    job = spec(executor="wasm", module=SHA)
    missing = refusal(dataclasses.replace(NODE, image_present=False), job, SandboxAsk(), allow_network=False)
    assert missing is not None and "did not arrive" in missing
    bad = dataclasses.replace(NODE, module_problem="the module imports env.connect; ...")
    assert refusal(bad, job, SandboxAsk(), allow_network=False) == "the module imports env.connect; ..."
    # The image allow-list is about containers.
    listed = dataclasses.replace(NODE, image_allowlist=("busybox:1",))
    assert refusal(listed, job, SandboxAsk(), allow_network=False) is None


def test_wasi_preview_1_only() -> None:
    wasi = "wasi_snapshot_preview1"
    assert wasi_problem([(wasi, "fd_write", "func")], ["_start", "memory"]) is None
    assert "exports no _start" in (wasi_problem([], ["main"]) or "")
    problem = wasi_problem(
        [(wasi, "fd_write", "func"), ("env", "connect", "func"), (wasi, "memory", "memory")], ["_start"]
    )
    assert problem is not None and "env.connect" in problem and f"{wasi}.memory" in problem
    assert "fd_write" not in problem
    assert "wasi_http" in (wasi_problem([("wasi:http/outgoing-handler", "wasi_http", "func")], ["_start"]) or "")


def test_the_advert_lists_the_working_executors() -> None:
    now = datetime.now(UTC)
    rec = Onboarding("nunet-test", "0x" + "1" * 40, 1, Resources(1000, 1000), True, now, now)
    machine = Provisioned(cpu_mhz=4000, cores=4, memory_mb=8000, disk_mb=1000, gpus=())
    advert = advert_for(rec, Resources(1000, 1000), machine, ("wasm",))
    assert advert is not None and advert.executors == ("wasm",)


def test_memory_verdict_names_the_limit_only_when_the_module_failed_at_it() -> None:
    limit = 8 * 2**20
    at_limit = WorkerResult(3, "exited", memory_bytes=limit - PAGE // 2)
    assert "memory limit was reached (8 MB" in (memory_verdict(at_limit, limit) or "")
    assert "exited with code 3" in (memory_verdict(at_limit, limit) or "")
    assert memory_verdict(dataclasses.replace(at_limit, exit_code=0), limit) is None
    assert memory_verdict(dataclasses.replace(at_limit, memory_bytes=PAGE), limit) is None
    trap = WorkerResult(1, "trap", "unreachable", memory_bytes=limit)
    assert "trapped: unreachable" in (memory_verdict(trap, limit) or "")
