"""GPU discovery for onboarding: NVIDIA and AMD cards, their model and total VRAM.

NVIDIA cards are asked through NVML (the library nvidia-smi itself sits on) first: it is
a direct, versioned C API that needs no subprocess and no text parsing, and NVIDIA documents
nvidia-smi's output as not guaranteed to stay backwards compatible. NVML can still be missing
or unloadable (no ``pynvml``, ``libnvidia-ml.so`` outside the daemon's library path, a
container without the library mounted) while the ``nvidia-smi`` binary works, so nvidia-smi's
CSV output is the fallback. AMD cards are read from ``rocm-smi --json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

MIB = 1024 * 1024
DEFAULT_TIMEOUT = 5.0
NVIDIA_SMI_ARGV = [
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total",
    "--format=csv,noheader,nounits",
]
ROCM_SMI_ARGS = ["--showproductname", "--showmeminfo", "vram", "--json"]
# systemd units often lack /opt/rocm/bin on PATH, where ROCm installs rocm-smi.
ROCM_SMI_PATHS = ("rocm-smi", "/opt/rocm/bin/rocm-smi")

Runner = Callable[[list[str], float], str | None]


class GpuProbeError(Exception):
    """A GPU probe could not run, or its tool's output could not be understood."""


@dataclass(frozen=True)
class Gpu:
    index: int  # position as the vendor tool numbers it
    vendor: str  # "nvidia" | "amd"
    model: str  # e.g. "NVIDIA A100-SXM4-80GB", "AMD Instinct MI210"
    vram_mb: int  # total VRAM in MiB (MB as 1024*1024 bytes), 0 if unknown
    uuid: str | None = None


_UNKNOWN = {"", "n/a", "[n/a]", "[not supported]", "not supported", "unknown", "none"}
_HEX_ID = re.compile(r"0x[0-9a-fA-F]+")
_CARD_KEY = re.compile(r"card(\d+)")


def _known(value: str) -> bool:
    return value.strip().lower() not in _UNKNOWN


def _snippet(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def run_command(argv: list[str], timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Run ``argv`` and return its stdout; None when the binary does not exist."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired as exc:
        raise GpuProbeError(f"{argv[0]} timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise GpuProbeError(f"cannot run {argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        # nvidia-smi prints its failures on stdout, most other tools on stderr.
        detail = _snippet(proc.stderr or proc.stdout, 500) or "no output"
        raise GpuProbeError(f"{' '.join(argv)} exited with status {proc.returncode}: {detail}")
    return proc.stdout


def _parse_mib(value: str) -> int:
    value = value.strip()
    if value.lower().endswith("mib"):
        value = value[:-3].strip()
    try:
        return max(int(float(value)), 0) if _known(value) else 0
    except ValueError:
        return 0


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits``.

    Also accepts a header line and "MiB" units (``--format=csv``); "[N/A]" memory becomes 0.
    """
    gpus: list[Gpu] = []
    bad: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.lower().startswith("index,"):
            continue
        if line.lower() == "no devices were found":
            return []
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 4 or not fields[0].isdigit():
            bad.append(line)
            continue
        # A name containing commas is rejoined: index and uuid come first, memory last.
        name = ", ".join(fields[2:-1])
        uuid = fields[1] if _known(fields[1]) else None
        gpus.append(Gpu(int(fields[0]), "nvidia", name or "NVIDIA GPU", _parse_mib(fields[-1]), uuid))
    if bad and not gpus:
        raise GpuProbeError(f"cannot parse nvidia-smi output: {_snippet(bad[0])!r}")
    for line in bad:
        log.warning("skipping unparseable nvidia-smi line: %r", _snippet(line))
    return gpus


def _amd_model(fields: dict[str, str]) -> str:
    keys = ("marketing name", "card series", "device name", "card model", "card sku")
    present = [fields[k] for k in keys if k in fields and _known(fields[k])]
    for value in present:  # a bare PCI id such as "0x740f" is the last resort
        if not _HEX_ID.fullmatch(value):
            return value
    return present[0] if present else "AMD GPU"


def _amd_vram_mb(fields: dict[str, str]) -> int:
    try:
        return max(int(fields.get("vram total memory (b)", "")), 0) // MIB
    except ValueError:
        return 0


def parse_rocm_smi_json(text: str) -> list[Gpu]:
    """Parse ``rocm-smi --showproductname --showmeminfo vram --json``.

    Keys other than ``cardN`` (e.g. ``system``) are ignored; warning lines that some ROCm
    releases print before the JSON are skipped; a card without VRAM data gets ``vram_mb=0``.
    """
    if not text.strip():
        return []
    start = re.search(r"^\s*\{", text, re.MULTILINE)
    if start is None:
        raise GpuProbeError(f"rocm-smi output holds no JSON object: {_snippet(text)!r}")
    try:
        data: dict[str, object] = json.JSONDecoder().raw_decode(text, start.end() - 1)[0]
    except json.JSONDecodeError as exc:
        raise GpuProbeError(f"cannot parse rocm-smi JSON: {exc}") from exc
    gpus: list[Gpu] = []
    for key, value in data.items():
        match = _CARD_KEY.fullmatch(key.strip().lower())
        if match is None or not isinstance(value, dict):
            continue
        fields = {str(k).strip().lower(): str(v).strip() for k, v in value.items()}
        uuid = fields.get("unique id", "")
        gpus.append(
            Gpu(
                index=int(match[1]),
                vendor="amd",
                model=_amd_model(fields),
                vram_mb=_amd_vram_mb(fields),
                uuid=uuid if _known(uuid) else None,
            )
        )
    return sorted(gpus, key=lambda gpu: gpu.index)


def _text(value: object) -> str:
    # pynvml returns bytes before 11.x and str after.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def detect_nvidia_nvml() -> list[Gpu]:
    """List NVIDIA GPUs through NVML; raises GpuProbeError when NVML is unavailable."""
    try:
        import pynvml
    except ImportError as exc:
        raise GpuProbeError(f"pynvml is not installed: {exc}") from exc
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError) as exc:
        raise GpuProbeError(f"NVML unavailable: {exc}") from exc
    try:
        gpus: list[Gpu] = []
        for index in range(int(pynvml.nvmlDeviceGetCount())):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            try:  # unified-memory parts (GB10) answer NOT_SUPPORTED
                vram_mb = int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // MIB
            except pynvml.NVMLError:
                vram_mb = 0
            name = _text(pynvml.nvmlDeviceGetName(handle))
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            gpus.append(Gpu(index, "nvidia", name, vram_mb, uuid or None))
        return gpus
    except pynvml.NVMLError as exc:
        raise GpuProbeError(f"NVML query failed: {exc}") from exc
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def detect_nvidia_smi(run: Runner = run_command) -> list[Gpu]:
    """List NVIDIA GPUs by running nvidia-smi; [] when it is not installed."""
    out = run(NVIDIA_SMI_ARGV, DEFAULT_TIMEOUT)
    return [] if out is None else parse_nvidia_smi_csv(out)


def detect_amd(run: Runner = run_command) -> list[Gpu]:
    """List AMD GPUs by running rocm-smi; [] when it is not installed."""
    for binary in ROCM_SMI_PATHS:
        out = run([binary, *ROCM_SMI_ARGS], DEFAULT_TIMEOUT)
        if out is not None:
            return parse_rocm_smi_json(out)
    return []


def _probe(what: str, probe: Callable[[], list[Gpu]]) -> list[Gpu]:
    try:
        return probe()
    except GpuProbeError as exc:
        log.warning("%s GPU probe failed, reporting no such GPUs: %s", what, exc)
    except Exception as exc:
        log.warning("%s GPU probe failed unexpectedly, reporting no such GPUs: %r", what, exc, exc_info=True)
    return []


def _detect_nvidia() -> list[Gpu]:
    try:
        return detect_nvidia_nvml()
    except Exception as exc:  # the usual case on machines without NVIDIA: not worth a warning
        log.info("NVML probe failed (%s); falling back to nvidia-smi", exc)
    return _probe("NVIDIA (nvidia-smi)", detect_nvidia_smi)


def detect_gpus() -> list[Gpu]:
    """All GPUs of this machine, NVIDIA first; [] when there are none. Never raises."""
    return _detect_nvidia() + _probe("AMD (rocm-smi)", detect_amd)
