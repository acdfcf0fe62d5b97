"""Does the daemon's work still succeed inside nunet-dms.service's sandbox? (run by tests/package/test_deb.py)

The test runs this file with the package's venv Python in a copy of the installed unit (same user, groups and
hardening; only Type and ExecStart differ), so every check meets exactly the restrictions the daemon meets:
the imports and native code of the whole stack (libp2p, web3, Docker client, NVML), sockets of each allowed
family, netlink for interface addresses, the Docker API socket through the docker group, /var/lib/nunet
writable and everything else read-only. Two checks prove the sandbox is on at all: a packet socket and a
writable+executable mapping must both be refused.

`python3 sandbox_probe.py --fake-docker PATH` (as root, Debian's python3) instead serves one Docker-style
`GET /_ping` on a unix socket owned by root:docker 0660, as dockerd's socket is.

Prints one line per check and writes them as JSON to $STATE_DIRECTORY/probe-report.json; exit 1 on any failure.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

DOCKER_SOCK = "/run/docker.sock"
PING_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOK"


def check_imports() -> str:
    import aiodocker
    import eth_account
    import libp2p
    import pynvml
    import web3
    from systemd import daemon, journal

    import dms.app

    assert daemon.notify and journal.JournalHandler and isinstance(dms.app.Daemon, type)
    return ", ".join(m.__name__ for m in (aiodocker, eth_account, libp2p, pynvml, web3))


def check_crypto() -> str:
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.crypto.secp256k1 import create_new_key_pair as secp_pair

    acct = Account.create()
    signed = acct.sign_message(encode_defunct(text="probe"))
    assert Account.recover_message(encode_defunct(text="probe"), signature=signed.signature) == acct.address
    ed = create_new_key_pair()
    assert ed.private_key.sign(b"x")
    secp_pair()
    return "eth-account signature, ed25519 and secp256k1 key pairs"


def check_ctypes_callback() -> str:
    # libffi closures (ctypes and cffi callbacks) must work without writable+executable memory.
    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
    assert callback(41) == 42
    return "ctypes callback ran"


def check_wx_mapping_refused() -> str:
    try:
        mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except OSError as exc:
        assert exc.errno == errno.EPERM, exc
        return "refused (MemoryDenyWriteExecute is on)"
    raise AssertionError("a writable+executable mapping was allowed")


def check_inet() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        with socket.create_connection(srv.getsockname(), timeout=5):
            conn, _ = srv.accept()
            conn.close()
    socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
    return "tcp listen/connect on 127.0.0.1, AF_INET6 socket"


def check_trio() -> str:
    import trio

    async def main() -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, lambda s: s.send_all(b"hi"), listeners)
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            assert await stream.receive_some(2) == b"hi"
            nursery.cancel_scope.cancel()

    trio.run(main)
    return "trio tcp round trip (libp2p's runtime)"


def check_netlink() -> str:
    import ifaddr
    import psutil

    names = set(psutil.net_if_addrs())
    adapters = [a.name for a in ifaddr.get_adapters()]
    assert "lo" in names and adapters, (names, adapters)
    return f"{len(names)} interfaces via psutil, {len(adapters)} via ifaddr"


def check_packet_socket_refused() -> str:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    except OSError as exc:
        assert exc.errno == errno.EAFNOSUPPORT, exc
        return "refused (RestrictAddressFamilies is on)"
    raise AssertionError("an AF_PACKET socket was allowed")


def check_docker_socket() -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(DOCKER_SOCK)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"OK"), reply
    return f"GET /_ping on {DOCKER_SOCK} through the docker group"


def check_files() -> str:
    state = Path(os.environ["STATE_DIRECTORY"])
    assert state == Path("/var/lib/nunet"), state
    with tempfile.NamedTemporaryFile(dir=state) as f:
        f.write(b"x")
    from dms.config import load_settings

    settings, _ = load_settings("/etc/nunet/dms_config.json")
    assert settings.general.data_dir == state, settings.general.data_dir
    for read_only in ("/etc/nunet", "/opt/venvs/nunet-dms", "/usr/local"):
        try:
            tempfile.NamedTemporaryFile(dir=read_only).close()
        except OSError as exc:
            assert exc.errno in (errno.EROFS, errno.EACCES), exc
        else:
            raise AssertionError(f"{read_only} is writable")
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"x")
    return "/var/lib/nunet and /tmp writable, config readable, /etc /opt /usr read-only"


def check_subprocess() -> str:
    # The GPU probes run vendor tools (nvidia-smi, rocm-smi) as subprocesses.
    out = subprocess.run(["/bin/sh", "-c", "id -un; id -Gn"], capture_output=True, text=True, check=True).stdout
    user, groups = out.splitlines()
    assert user == "nunet" and "docker" in groups.split(), out
    return f"subprocess ran as {user} ({groups})"


CHECKS: list[Callable[[], str]] = [
    check_imports,
    check_crypto,
    check_ctypes_callback,
    check_wx_mapping_refused,
    check_inet,
    check_trio,
    check_netlink,
    check_packet_socket_refused,
    check_docker_socket,
    check_files,
    check_subprocess,
]


def probe() -> int:
    report: dict[str, dict[str, object]] = {}
    for check in CHECKS:
        name = check.__name__.removeprefix("check_")
        try:
            report[name] = {"ok": True, "detail": check()}
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(exc)).strip()
            report[name] = {"ok": False, "detail": detail, "trace": traceback.format_exc()}
        print(f"{'ok  ' if report[name]['ok'] else 'FAIL'} {name}: {report[name]['detail']}", flush=True)
    Path(os.environ["STATE_DIRECTORY"], "probe-report.json").write_text(json.dumps(report, indent=2))
    return 0 if all(r["ok"] for r in report.values()) else 1


def fake_docker(path: str) -> None:
    import grp

    if os.path.exists(path):
        os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(path)
        os.chown(path, 0, grp.getgrnam("docker").gr_gid)
        os.chmod(path, 0o660)
        srv.listen()
        srv.settimeout(120)
        conn, _ = srv.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(PING_REPLY)
    os.unlink(path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fake-docker"]:
        fake_docker(sys.argv[2])
    else:
        sys.exit(probe())
