"""Pure: the Docker API body of a job's container (the sandbox, its labels, its disk, its GPUs), so the
sandbox can be checked without an engine.

Sandbox defaults: no network unless the operator allows it, every capability dropped, no-new-privileges,
a pids limit, memory (no swap) and CPU limits from the job's own request, never privileged, no host
mounts but the ones dms prepares itself. The root file system is read-only; the job writes to its own
disk at `/workspace` (mounted by dms and bind-mounted, or an anonymous volume the engine makes and removes
with the container), and to a small `/tmp` in memory (programs expect one; its pages count against the job's
memory limit). The engine's own copy of the logs is bounded.
"""

from __future__ import annotations

from typing import Any

from dms.executor.base import ContainerSpec
from dms.executor.jobdisk import WORKSPACE, JobDisk

LABEL_INSTANCE = "dms.instance"
LABEL_JOB = "dms.job"
# The engine keeps its own copy of a job's output (the one `docker logs` and a restarted daemon read):
# at most ENGINE_LOG_FILES files of ENGINE_LOG_FILE_MB each, the oldest dropped first.
ENGINE_LOG_FILE_MB = 16
ENGINE_LOG_FILES = 2
# `/tmp` is a tmpfs of a quarter of the job's memory, at most TMP_MAX_MB: its pages are charged to the
# container, so it cannot take more than the job's own memory limit.
TMP_MAX_MB = 64


def tmp_size_mb(memory_mb: int) -> int:
    return max(1, min(TMP_MAX_MB, memory_mb // 4))


def container_name(instance: str, job_id: str) -> str:
    return f"dms-{instance[:12]}-{job_id}"


def container_config(spec: ContainerSpec, instance: str, disk: JobDisk | None = None) -> dict[str, Any]:
    """The Docker API body for `spec`: pure, so the sandbox can be checked without an engine.

    With `disk`, it is mounted at /workspace (a tmpfs disk adds its size to the memory limit,
    since its pages are charged to the container); without, the job has no writable space at all.
    """
    memory = (spec.memory_mb + (disk.memory_mb if disk else 0)) * 2**20
    mounts: list[dict[str, Any]] = []
    if disk is not None and disk.mount is not None:  # mounted by dms itself: a bind mount costs the engine least
        mounts.append({"Type": "bind", "Source": str(disk.mount), "Target": WORKSPACE, "ReadOnly": False})
    elif disk is not None:  # an anonymous volume: made with the container, removed with it (`delete(v=True)`)
        options = {
            "Labels": {LABEL_INSTANCE: instance, LABEL_JOB: spec.job_id},
            "DriverConfig": {"Name": "local", "Options": disk.volume_options()},
        }
        mounts.append({"Type": "volume", "Target": WORKSPACE, "VolumeOptions": options})
    host: dict[str, Any] = {
        "NetworkMode": "default" if spec.network else "none",
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Privileged": False,
        "PidsLimit": spec.pids_limit,
        "Memory": memory,
        "MemorySwap": memory,
        "NanoCpus": int(spec.cores * 1e9),
        "ReadonlyRootfs": True,
        "Tmpfs": {"/tmp": f"rw,nosuid,nodev,size={tmp_size_mb(spec.memory_mb)}m,mode=1777"},
        "Binds": [],
        "Mounts": mounts
        + [{"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": m.read_only} for m in spec.mounts],
        "Devices": [],
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": f"{ENGINE_LOG_FILE_MB}m", "max-file": str(ENGINE_LOG_FILES)},
        },
    }
    if spec.gpus is not None and spec.gpus.vendor == "nvidia":
        host["DeviceRequests"] = [
            {"Driver": "nvidia", "DeviceIDs": list(spec.gpus.device_ids), "Capabilities": [["gpu"]]}
        ]
    elif spec.gpus is not None and spec.gpus.vendor == "amd":
        host["Devices"] = [
            {"PathOnHost": p, "PathInContainer": p, "CgroupPermissions": "rwm"} for p in ("/dev/kfd", "/dev/dri")
        ]
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": {LABEL_INSTANCE: instance, LABEL_JOB: spec.job_id},
        "HostConfig": host,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
    }
    if spec.command:
        config["Cmd"] = list(spec.command)
    return config
