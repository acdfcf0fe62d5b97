"""What a job's `inputs` may say: pure checks shared by the SP (the REST request) and the CP (the
deployment request, which a hostile SP could write by hand)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from dms.artifacts.store import SHA256
from dms.artifacts.urls import check_url

PATH_PART = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_INPUTS = 64


def is_hash(source: str) -> bool:
    return bool(SHA256.match(source))


def source_problem(source: str) -> str | None:
    """Why `source` is neither an artifact's sha256 (64 lower-case hex digits) nor an http(s) URL."""
    if is_hash(source):
        return None
    if "://" not in source:
        return "expected an artifact's sha256 (64 lower-case hex digits) or an http(s) URL"
    return check_url(source)


def path_problem(path: str) -> str | None:
    """Why `path` cannot name a file under /inputs: relative, plain names, no `.` or `..` parts."""
    parts = path.split("/")
    if any(not PATH_PART.match(p) or p in (".", "..") for p in parts):
        return "a relative path of plain names (letters, digits, . _ -), without . or .. parts"
    return None


def paths_problem(paths: Sequence[str]) -> str | None:
    """Why these paths cannot all be files at once (a duplicate, or one inside another)."""
    seen = set(paths)
    if len(seen) != len(paths):
        return "two inputs have the same path"
    for p in paths:
        parts = p.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                return f"{p} is inside {'/'.join(parts[:i])}, which is a file"
    return None


RESERVED = ("/inputs", "/outputs", "/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/lib", "/usr")


CHECKPOINT_PATH = "/workspace"
"""The job's disk (dms.executor.jobdisk): the one folder a checkpoint is taken of."""


def checkpoint_path_problem(path: str) -> str | None:
    """Why `path` cannot be a job's checkpoint folder: absolute, plain names, not a system or dms folder."""
    if not path.startswith("/") or path_problem(path[1:]):
        return "an absolute path of plain names (letters, digits, . _ -), without . or .. parts"
    if any(path == r or path.startswith(r + "/") for r in RESERVED):
        return f"{path} is a system folder or one dms mounts itself"
    if path != CHECKPOINT_PATH:
        return f"checkpoints are taken of the job's own bounded disk, {CHECKPOINT_PATH}"
    return None
