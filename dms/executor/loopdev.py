"""Loop devices and sparse copies without a subprocess: a job disk costs a few system calls, not three tools.

`losetup` (and `mkfs.ext4` + `debugfs` for every disk) meant three process spawns from the daemon per job,
about 8 ms of CPU each time and most of the provider's own CPU in a burst (bench/RESULTS.md, "Job
throughput after the store's fast path"). Here a disk is a sparse copy of a template image made once per
size (a fresh ext4 of 64 MB holds about 300 KB of metadata), attached with the kernel's loop ioctls.
The disk is then mounted here (`mount_ext4`, when the engine shares this process's mounts) and handed to
the container as a bind mount. Every function blocks: call them in a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from pathlib import Path

LOOP_CONTROL = Path("/dev/loop-control")
LOOP_SET_FD = 0x4C00
LOOP_CLR_FD = 0x4C01
LOOP_CTL_GET_FREE = 0x4C82
ATTACH_TRIES = 64
"""A free device can be taken by another process between finding and attaching it: try the next one."""
_attaching = threading.Lock()
"""This process's attaches one at a time (else its own threads race for the same free device)."""
MS_NOSUID, MS_NODEV = 2, 4
_libc = ctypes.CDLL(None, use_errno=True)


def shares_mounts_with(socket_path: str) -> bool:
    """Whether the process serving the unix socket `socket_path` (the Docker engine) sees this process's
    mounts: the same mount namespace. False when it cannot tell (a private namespace, /proc hidden)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(socket_path)
            cred = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", cred)[0]
        return os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False


def mount_ext4(device: str, target: Path) -> None:
    """Mount the ext4 file system on `device` at the (new or empty) folder `target`, no setuid, no devices.
    Raises OSError."""
    target.mkdir(exist_ok=True)
    if _libc.mount(device.encode(), str(target).encode(), b"ext4", MS_NOSUID | MS_NODEV, None) != 0:
        err = ctypes.get_errno()
        target.rmdir()
        raise OSError(err, f"cannot mount {device} at {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    """Unmount `target` and remove the folder. Raises OSError; a folder not mounted, or gone, is not an
    error."""
    if _libc.umount2(str(target).encode(), 0) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (unmounted already)
            raise OSError(err, f"cannot unmount {target}: {os.strerror(err)}")
    with contextlib.suppress(FileNotFoundError):
        target.rmdir()


def attach(image: Path) -> str:
    """Attach `image` to a free loop device; the device's path. Raises OSError (no loop devices, no right)."""
    ctl = os.open(LOOP_CONTROL, os.O_RDWR | os.O_CLOEXEC)
    try:
        with _attaching:
            for _ in range(ATTACH_TRIES):
                device = f"/dev/loop{fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)}"
                if _attached(device, image):
                    return device
        raise OSError(errno.EBUSY, f"no free loop device after {ATTACH_TRIES} tries")
    finally:
        os.close(ctl)


def _attached(device: str, image: Path) -> bool:
    """Whether `image` is now attached to `device` (False: another process took the device first)."""
    loop = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    try:
        backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(loop, LOOP_SET_FD, backing)
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            return False
        finally:
            os.close(backing)
    finally:
        os.close(loop)


def detach(device: str) -> None:
    """Detach `device` (at once, or when its last user closes it, if still mounted). Raises OSError; a device
    already detached is not an error."""
    fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, LOOP_CLR_FD, 0)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
    finally:
        os.close(fd)


def sparse_copy(source: Path, dest: Path) -> None:
    """Copy `source` to a new file `dest` of the same size, writing only its data (its holes stay holes)."""
    with source.open("rb") as src, dest.open("xb") as dst:
        size = os.fstat(src.fileno()).st_size
        os.ftruncate(dst.fileno(), size)
        offset = 0
        while offset < size:
            try:
                start = os.lseek(src.fileno(), offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole after offset
                    break
                raise
            end = os.lseek(src.fileno(), start, os.SEEK_HOLE)
            while start < end:
                done = os.copy_file_range(src.fileno(), dst.fileno(), end - start, start, start)
                if done == 0:
                    raise OSError(errno.EIO, f"short copy of {source}")
                start += done
            offset = end
