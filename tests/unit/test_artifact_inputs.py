"""The pure rules for job inputs: which sources, paths and addresses are accepted."""

from __future__ import annotations

import ipaddress

import pytest
from pydantic import ValidationError

from dms.artifacts.inputs import path_problem, paths_problem, source_problem
from dms.artifacts.urls import address_refusal
from dms.jobs.spec import JobSpec

ip = ipaddress.ip_address


@pytest.mark.parametrize(
    ("addr", "word"),
    [("127.0.0.1", "loopback"), ("::1", "loopback"), ("169.254.169.254", "link-local"), ("10.1.2.3", "private"),
     ("192.168.0.1", "private"), ("fd00::1", "private"), ("::ffff:10.0.0.1", "private"), ("0.0.0.0", "private"),
     ("224.0.0.1", "multicast")],
)  # fmt: skip
def test_internal_addresses_are_refused(addr: str, word: str) -> None:
    reason = address_refusal(ip(addr), ())
    assert reason is not None and word in reason


def test_public_and_allowed_addresses_pass() -> None:
    assert address_refusal(ip("93.184.216.34"), ()) is None
    assert address_refusal(ip("127.0.0.1"), (ipaddress.ip_network("127.0.0.1/32"),)) is None
    assert address_refusal(ip("127.0.0.2"), (ipaddress.ip_network("127.0.0.1/32"),)) is not None


def test_sources_and_paths() -> None:
    assert source_problem("a" * 64) is None
    assert source_problem("https://example.org/x") is None
    assert source_problem("A" * 64) is not None  # lower case only
    assert source_problem("file:///etc/passwd") is not None
    assert source_problem("http://user:pw@host/x") is not None
    assert path_problem("data/a.csv") is None
    for bad in ("/etc/passwd", "../x", "a/../../x", "a//b", "", "a/./b", "a b"):
        assert path_problem(bad) is not None, bad
    assert paths_problem(["a", "b/c"]) is None
    assert paths_problem(["a", "a"]) is not None
    assert paths_problem(["a", "a/b"]) is not None


def test_job_spec_refuses_bad_inputs_naming_the_field() -> None:
    base = {"image": "x", "resources": {"cpu_mhz": 1, "cores": 1.0, "memory_mb": 6}, "max_price": 0, "duration_s": 1}
    JobSpec.model_validate({**base, "inputs": [{"source": "a" * 64, "path": "in"}]})
    with pytest.raises(ValidationError) as err:
        JobSpec.model_validate({**base, "inputs": [{"source": "a" * 64, "path": "../etc"}]})
    assert err.value.errors()[0]["loc"] == ("inputs", 0, "path")
    with pytest.raises(ValidationError):
        JobSpec.model_validate({**base, "inputs": [{"source": "ftp://x/y", "path": "in"}]})


def test_checkpoint_and_restore_rules() -> None:
    base = {"image": "x", "resources": {"cpu_mhz": 1, "cores": 1.0, "memory_mb": 6}, "max_price": 0, "duration_s": 1}
    ok = JobSpec.model_validate({**base, "checkpoint": {"interval_s": 5}, "restore": "b" * 64})
    assert ok.checkpoint is not None and ok.checkpoint.path == "/workspace"
    for bad in ({"checkpoint": {"path": "/outputs", "interval_s": 5}}, {"checkpoint": {"path": "rel", "interval_s": 5}},
                {"checkpoint": {"interval_s": 0.5}}, {"restore": "b" * 64}):  # fmt: skip
        with pytest.raises(ValidationError):
            JobSpec.model_validate({**base, **bad})


def test_a_checkpoint_is_only_of_the_jobs_disk() -> None:
    """The checkpoint is the job's bounded disk, /workspace; a wasm job has none."""
    base = {"image": "x", "resources": {"cpu_mhz": 1, "cores": 1.0, "memory_mb": 6}, "max_price": 0, "duration_s": 1}
    with pytest.raises(ValidationError, match="bounded disk, /workspace"):
        JobSpec.model_validate({**base, "checkpoint": {"path": "/data", "interval_s": 5}})
    wasm = {**base, "executor": "wasm", "module": "a" * 64, "image": None}
    with pytest.raises(ValidationError, match="for docker jobs"):
        JobSpec.model_validate({**wasm, "checkpoint": {"interval_s": 5}})
