"""Tests for dms.onboarding.gpus: parsers on recorded tool outputs, probe fallbacks, run_command."""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import types
from pathlib import Path

import pytest

from dms.onboarding import gpus
from dms.onboarding.gpus import (
    Gpu,
    GpuProbeError,
    detect_amd,
    detect_gpus,
    detect_nvidia_nvml,
    detect_nvidia_smi,
    parse_nvidia_smi_csv,
    parse_rocm_smi_json,
    run_command,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "gpu"
LOGGER = "dms.onboarding.gpus"
VENDOR = "Advanced Micro Devices, Inc. [AMD/ATI]"


def read(name: str) -> str:
    return (DATA / name).read_bytes().decode()


def nv(index: int, model: str, vram_mb: int, uuid: str | None) -> Gpu:
    return Gpu(index=index, vendor="nvidia", model=model, vram_mb=vram_mb, uuid=uuid)


def amd(index: int, model: str, vram_mb: int) -> Gpu:
    return Gpu(index=index, vendor="amd", model=model, vram_mb=vram_mb)


A100_0 = nv(0, "NVIDIA A100-SXM4-80GB", 81920, "GPU-4b4a0f5e-3f6e-2c6b-9d5e-6c1b1a4d7e21")
A100_1 = nv(1, "NVIDIA A100-SXM4-80GB", 81920, "GPU-9c1e7a2d-51b3-8f40-0a6d-e2f3c4b5a697")
MI210_0 = amd(0, "AMD Instinct MI210", 65520)
MI210_1 = amd(1, "AMD Instinct MI210", 65520)

NVIDIA_CASES = {
    "nvidia-smi-2xA100.csv": [A100_0, A100_1],
    "nvidia-smi-noheader-units.csv": [
        nv(0, "NVIDIA GeForce RTX 4090", 24564, "GPU-e18afb8d-1627-f8ff-2ba3-c05c5a8e9e67")
    ],
    "nvidia-smi-header-h100.csv": [
        nv(0, "NVIDIA H100 80GB HBM3", 81559, "GPU-1f3e5d7c-9b2a-4c6e-8d0f-a1b2c3d4e5f6"),
        nv(1, "NVIDIA H100 80GB HBM3", 81559, "GPU-7a8b9c0d-1e2f-3a4b-5c6d-7e8f9a0b1c2d"),
    ],
    "nvidia-smi-gb10-na.csv": [nv(0, "NVIDIA GB10", 0, "GPU-2dee1e25-b3b5-007e-2b55-79f2d0f2ebe5")],
    "nvidia-smi-whitespace.csv": [
        nv(0, "Tesla V100-SXM2-16GB", 16160, "GPU-5d1c3b7a-8e2f-4a6b-9c0d-1e2f3a4b5c6d"),
        nv(1, "Tesla T4", 15360, None),
        nv(2, "Tesla T4", 0, "GPU-0e9d8c7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b"),
    ],
    "nvidia-smi-no-devices.txt": [],
}

AMD_CASES = {
    "rocm-smi-mi210.json": [MI210_0, MI210_1],
    "rocm-smi-older.json": [
        amd(0, "Arcturus GL-XL [AMD Instinct MI100]", 32752),
        amd(1, "Arcturus GL-XL [AMD Instinct MI100]", 32752),
    ],
    "rocm-smi-rocm40-hexids.json": [amd(0, "D34314", 32752)],
    "rocm-smi-mi300x-novram.json": [
        amd(0, "AMD Instinct MI300X VF", 196592),
        amd(1, "AMD Instinct MI300X VF", 0),
    ],
    "rocm-smi-lowpower-warning.json": [
        amd(0, "AMD Radeon 8060S Graphics", 512),
        amd(1, "AMD Radeon RX 9070 XT", 16368),
    ],
    "rocm-smi-rx7900xt-pretty.json": [amd(0, "Radeon RX 7900 XT", 20464)],
}


def test_every_recorded_file_is_covered() -> None:
    covered = {
        *NVIDIA_CASES,
        *AMD_CASES,
        "nvidia-smi-driver-failure.txt",
        "rocm-smi-driver-not-initialized.txt",
    }
    recorded = {p.name for p in DATA.iterdir() if p.suffix in {".csv", ".json", ".txt"}}
    assert recorded == covered


def test_gpu_is_frozen_and_hashable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        A100_0.vram_mb = 1  # type: ignore[misc]
    assert len({A100_0, dataclasses.replace(A100_0)}) == 1
    assert amd(0, "x", 0).uuid is None


# ---- nvidia-smi parser


@pytest.mark.parametrize("name", sorted(NVIDIA_CASES))
def test_parse_nvidia_smi_recorded(name: str) -> None:
    assert parse_nvidia_smi_csv(read(name)) == NVIDIA_CASES[name]


def test_parse_nvidia_smi_driver_failure_raises() -> None:
    with pytest.raises(GpuProbeError, match=r"cannot parse nvidia-smi output.*couldn't communicate"):
        parse_nvidia_smi_csv(read("nvidia-smi-driver-failure.txt"))


@pytest.mark.parametrize("text", ["", "\n", "  \r\n\n"])
def test_parse_nvidia_smi_empty_output(text: str) -> None:
    assert parse_nvidia_smi_csv(text) == []


def test_parse_nvidia_smi_skips_a_bad_line_among_good_ones(caplog: pytest.LogCaptureFixture) -> None:
    text = read("nvidia-smi-2xA100.csv") + "garbage without fields\n"
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert parse_nvidia_smi_csv(text) == [A100_0, A100_1]
    assert "garbage without fields" in caplog.text


def test_parse_nvidia_smi_rejoins_a_name_with_commas() -> None:
    text = "3, GPU-abc, Weird, Name, 1024\n"
    assert parse_nvidia_smi_csv(text) == [nv(3, "Weird, Name", 1024, "GPU-abc")]


# ---- rocm-smi parser


@pytest.mark.parametrize("name", sorted(AMD_CASES))
def test_parse_rocm_smi_recorded(name: str) -> None:
    assert parse_rocm_smi_json(read(name)) == AMD_CASES[name]


def test_parse_rocm_smi_ignores_system_key() -> None:
    assert "system" in read("rocm-smi-older.json")
    assert [g.index for g in parse_rocm_smi_json(read("rocm-smi-older.json"))] == [0, 1]


def test_parse_rocm_smi_not_json_raises() -> None:
    with pytest.raises(GpuProbeError, match=r"no JSON object.*Driver not initialized"):
        parse_rocm_smi_json(read("rocm-smi-driver-not-initialized.txt"))


def test_parse_rocm_smi_truncated_json_raises() -> None:
    with pytest.raises(GpuProbeError, match="cannot parse rocm-smi JSON"):
        parse_rocm_smi_json(read("rocm-smi-mi210.json")[:120])


def test_parse_rocm_smi_non_object_raises() -> None:
    with pytest.raises(GpuProbeError, match="no JSON object"):
        parse_rocm_smi_json('["card0"]')


def test_parse_rocm_smi_empty_output() -> None:
    assert parse_rocm_smi_json("") == []
    assert parse_rocm_smi_json("{}") == []


def test_parse_rocm_smi_model_preference_unique_id_and_order() -> None:
    text = (
        '{"card3": {"Card series": "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]", '
        '"Marketing Name": "AMD Radeon RX 6900 XT", "Unique ID": "0x2b8d5a1c03e4f1a7", '
        '"VRAM Total Memory (B)": "N/A"}, '
        '"card1": {"Card vendor": "' + VENDOR + '"}}'
    )
    assert parse_rocm_smi_json(text) == [
        amd(1, "AMD GPU", 0),
        Gpu(3, "amd", "AMD Radeon RX 6900 XT", 0, "0x2b8d5a1c03e4f1a7"),
    ]


# ---- detect_nvidia_smi / detect_amd with fake runners


class FakeRunner:
    def __init__(self, outputs: dict[str, str | Exception | None]) -> None:
        self.outputs = outputs
        self.calls: list[tuple[list[str], float]] = []

    def __call__(self, argv: list[str], timeout: float) -> str | None:
        self.calls.append((argv, timeout))
        result = self.outputs.get(argv[0])
        if isinstance(result, Exception):
            raise result
        return result


def test_detect_nvidia_smi_runs_the_documented_query() -> None:
    run = FakeRunner({"nvidia-smi": read("nvidia-smi-2xA100.csv")})
    assert detect_nvidia_smi(run) == [A100_0, A100_1]
    assert run.calls == [
        (
            ["nvidia-smi", "--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"],
            gpus.DEFAULT_TIMEOUT,
        )
    ]


def test_detect_nvidia_smi_absent_binary() -> None:
    assert detect_nvidia_smi(FakeRunner({})) == []


def test_detect_amd_runs_rocm_smi_json() -> None:
    run = FakeRunner({"rocm-smi": read("rocm-smi-mi210.json")})
    assert detect_amd(run) == [MI210_0, MI210_1]
    assert run.calls == [(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"], gpus.DEFAULT_TIMEOUT)]


def test_detect_amd_falls_back_to_opt_rocm_path() -> None:
    run = FakeRunner({"/opt/rocm/bin/rocm-smi": read("rocm-smi-mi210.json")})
    assert detect_amd(run) == [MI210_0, MI210_1]
    assert [argv[0] for argv, _ in run.calls] == ["rocm-smi", "/opt/rocm/bin/rocm-smi"]


def test_detect_amd_absent_binary() -> None:
    run = FakeRunner({})
    assert detect_amd(run) == []
    assert len(run.calls) == 2


# ---- detect_nvidia_nvml with a stand-in pynvml module


class FakeNVMLError(Exception):
    pass


def fake_pynvml(
    devices: list[tuple[str | bytes, str | bytes, int | None]], init_error: bool = False
) -> types.ModuleType:
    mod = types.ModuleType("pynvml")
    state = {"shutdown": 0}

    def init() -> None:
        if init_error:
            raise FakeNVMLError("NVML Shared Library Not Found")

    def memory(handle: int) -> types.SimpleNamespace:
        total = devices[handle][2]
        if total is None:
            raise FakeNVMLError("Not Supported")
        return types.SimpleNamespace(total=total, free=total, used=0)

    def shutdown() -> None:
        state["shutdown"] += 1

    mod.NVMLError = FakeNVMLError  # type: ignore[attr-defined]
    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = shutdown  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: len(devices)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: i  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: devices[h][0]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetUUID = lambda h: devices[h][1]  # type: ignore[attr-defined]
    mod.nvmlDeviceGetMemoryInfo = memory  # type: ignore[attr-defined]
    mod.state = state  # type: ignore[attr-defined]
    return mod


def test_detect_nvidia_nvml_reads_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = fake_pynvml(
        [
            ("NVIDIA A100-SXM4-80GB", "GPU-4b4a0f5e-3f6e-2c6b-9d5e-6c1b1a4d7e21", 85899345920),
            (b"NVIDIA GB10", b"GPU-2dee1e25-b3b5-007e-2b55-79f2d0f2ebe5", None),
        ]
    )
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    assert detect_nvidia_nvml() == [
        A100_0,
        nv(1, "NVIDIA GB10", 0, "GPU-2dee1e25-b3b5-007e-2b55-79f2d0f2ebe5"),
    ]
    assert mod.state == {"shutdown": 1}


def test_detect_nvidia_nvml_init_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([], init_error=True))
    with pytest.raises(GpuProbeError, match="NVML unavailable: NVML Shared Library Not Found"):
        detect_nvidia_nvml()


def test_detect_nvidia_nvml_without_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(GpuProbeError, match="pynvml is not installed"):
        detect_nvidia_nvml()


def test_detect_nvidia_nvml_real_library() -> None:
    # No NVIDIA driver on the test machines: NVML must fail with GpuProbeError, not anything else.
    try:
        found = detect_nvidia_nvml()
    except GpuProbeError:
        return
    assert all(isinstance(g, Gpu) and g.vendor == "nvidia" for g in found)


# ---- detect_gpus fallback logic


def nvml_fails() -> list[Gpu]:
    raise GpuProbeError("NVML unavailable: NVML Shared Library Not Found")


def use(monkeypatch: pytest.MonkeyPatch, runner: FakeRunner, nvml: object = nvml_fails) -> None:
    monkeypatch.setattr(gpus, "detect_nvidia_nvml", nvml)
    monkeypatch.setattr(gpus, "detect_nvidia_smi", functools.partial(gpus.detect_nvidia_smi, runner))
    monkeypatch.setattr(gpus, "detect_amd", functools.partial(gpus.detect_amd, runner))


def test_detect_gpus_nvml_first(monkeypatch: pytest.MonkeyPatch) -> None:
    run = FakeRunner({"nvidia-smi": read("nvidia-smi-gb10-na.csv")})
    use(monkeypatch, run, nvml=lambda: [A100_0])
    assert detect_gpus() == [A100_0]
    assert [argv[0] for argv, _ in run.calls] == ["rocm-smi", "/opt/rocm/bin/rocm-smi"]


def test_detect_gpus_nvml_with_no_devices_does_not_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    run = FakeRunner({"nvidia-smi": read("nvidia-smi-2xA100.csv")})
    use(monkeypatch, run, nvml=lambda: [])
    assert detect_gpus() == []


def test_detect_gpus_falls_back_to_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    run = FakeRunner({"nvidia-smi": read("nvidia-smi-2xA100.csv"), "rocm-smi": read("rocm-smi-mi210.json")})
    use(monkeypatch, run)
    assert detect_gpus() == [A100_0, A100_1, MI210_0, MI210_1]


def test_detect_gpus_nothing_installed(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    use(monkeypatch, FakeRunner({}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert detect_gpus() == []
    assert caplog.records == []


def test_detect_gpus_nvidia_smi_fails(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    error = GpuProbeError("nvidia-smi exited with status 9: NVIDIA-SMI has failed")
    use(monkeypatch, FakeRunner({"nvidia-smi": error, "rocm-smi": read("rocm-smi-mi210.json")}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert detect_gpus() == [MI210_0, MI210_1]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "nvidia-smi" in record.getMessage() and "status 9" in record.getMessage()


def test_detect_gpus_rocm_smi_fails(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    error = GpuProbeError("rocm-smi exited with status 2: boom")
    use(monkeypatch, FakeRunner({"nvidia-smi": read("nvidia-smi-2xA100.csv"), "rocm-smi": error}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert detect_gpus() == [A100_0, A100_1]
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "AMD" in record.getMessage() and "boom" in record.getMessage()


def test_detect_gpus_unparseable_output(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    run = FakeRunner(
        {
            "nvidia-smi": read("nvidia-smi-driver-failure.txt"),
            "rocm-smi": read("rocm-smi-driver-not-initialized.txt"),
        }
    )
    use(monkeypatch, run)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert detect_gpus() == []
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    assert "couldn't communicate" in caplog.records[0].getMessage()
    assert "Driver not initialized" in caplog.records[1].getMessage()


def test_detect_gpus_unexpected_error(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> list[Gpu]:
        raise RuntimeError("bug in probe")

    use(monkeypatch, FakeRunner({"nvidia-smi": read("nvidia-smi-2xA100.csv")}))
    monkeypatch.setattr(gpus, "detect_amd", broken)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert detect_gpus() == [A100_0, A100_1]
    assert "bug in probe" in caplog.text


def test_detect_gpus_on_this_machine() -> None:
    found = detect_gpus()
    assert isinstance(found, list)
    assert all(isinstance(g, Gpu) for g in found)


# ---- run_command against real binaries


def test_run_command_returns_stdout() -> None:
    assert run_command(["echo", "x"]) == "x\n"


def test_run_command_missing_binary() -> None:
    assert run_command(["dms-no-such-binary-4f2a"]) is None


def test_run_command_nonzero_exit() -> None:
    with pytest.raises(GpuProbeError, match="false exited with status 1"):
        run_command(["false"])


def test_run_command_nonzero_exit_reports_stderr() -> None:
    with pytest.raises(GpuProbeError, match=r"status 3: no GPU here"):
        run_command(["sh", "-c", "echo partial; echo 'no GPU here' >&2; exit 3"])


def test_run_command_timeout() -> None:
    with pytest.raises(GpuProbeError, match=r"timed out after 0\.2 s"):
        run_command(["sleep", "5"], timeout=0.2)
