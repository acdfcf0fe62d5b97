"""Unpacking an untrusted outputs tar: only entries that stay inside the folder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from dms.artifacts.tarball import UnsafeTar, extract


def make_tar(path: Path, *entries: tarfile.TarInfo, data: bytes = b"hi") -> Path:
    with tarfile.open(path, "w") as tar:
        for e in entries:
            tar.addfile(e, io.BytesIO(data) if e.isfile() else None)
    return path


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 2) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o4755
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


def test_a_plain_tar_unpacks_without_setuid(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "ok.tar", entry("d", tarfile.DIRTYPE), entry("d/f"), entry("l", tarfile.SYMTYPE, "d/f"))
    assert extract(tar, tmp_path / "out") == ["d", "d/f", "l"]
    assert (tmp_path / "out" / "l").read_bytes() == b"hi"
    assert (tmp_path / "out" / "d" / "f").stat().st_mode & 0o7000 == 0


@pytest.mark.parametrize(
    "bad",
    [entry("../evil"), entry("/etc/evil"), entry("a/../../evil"), entry("l", tarfile.SYMTYPE, "../../etc/passwd"),
     entry("l", tarfile.SYMTYPE, "/etc/passwd"), entry("h", tarfile.LNKTYPE, "x"), entry("dev", tarfile.CHRTYPE)],
)  # fmt: skip
def test_escaping_or_special_entries_are_refused_before_writing(tmp_path: Path, bad: tarfile.TarInfo) -> None:
    tar = make_tar(tmp_path / "bad.tar", entry("first"), bad)
    with pytest.raises(UnsafeTar):
        extract(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()
