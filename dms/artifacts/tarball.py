"""Unpacking a job's outputs tar safely (Python 3.11.2 has no `tarfile` extraction filters).

A job wrote the tar's contents, so it is untrusted: only folders, regular files and symlinks that stay
inside the destination are unpacked; absolute names, `..`, links leaving the folder, devices and fifos
are refused, and modes lose setuid/setgid/sticky bits.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from pathlib import Path


class UnsafeTar(Exception):
    """The tar holds an entry that would land outside the destination, or is not a file, folder or link."""


def member_problem(m: tarfile.TarInfo) -> str | None:
    """Why this entry may not be unpacked (None: it may). Pure."""
    name = m.name
    norm = posixpath.normpath(name)
    if name.startswith("/") or norm == ".." or norm.startswith("../"):
        return f"{name!r} points outside the folder"
    if m.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(norm), m.linkname))
        if m.linkname.startswith("/") or target == ".." or target.startswith("../"):
            return f"link {name!r} points outside the folder ({m.linkname!r})"
    elif not (m.isfile() or m.isdir()):
        return f"{name!r} is neither a file, a folder nor a symlink"
    return None


def extract(tar_path: Path, dest: Path) -> list[str]:
    """Unpack `tar_path` into `dest` (created); the names unpacked. Raises UnsafeTar before writing anything."""
    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
        for m in members:
            if problem := member_problem(m):
                raise UnsafeTar(problem)
        dest.mkdir(parents=True, exist_ok=True)
        for m in members:
            m.mode &= 0o777
            m.uid = m.gid = os.getuid()
            tar.extract(m, dest, set_attrs=not m.issym())
    return [m.name for m in members]
