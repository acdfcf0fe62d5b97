"""Import py-libp2p without the parts dms never runs (issue 14, item 7: the network's fixed cost).

py-libp2p 0.8.1 imports QUIC (aioquic), TLS with AutoTLS (cryptography's x509, an ACME client on httpx and
requests), the circuit relay, WebSocket, Kademlia and mDNS (zeroconf) modules from `libp2p/__init__`,
`custom_types` and `host/basic_host`, whatever the host is built from. dms builds its host from TCP, Noise
and yamux only (`host.py`). `install()` puts a finder ahead of the normal ones that answers for those
packages with a stand-in module; every name imported from a stand-in is a stand-in class:
- `ABSENT` (never run by dms): using the name (calling it) raises ImportError naming the module, so a
  change that does need one fails at once and says why. `OVERRIDES` gives the few plain helpers that
  0.8.1 calls on paths we do run their real behaviour.
- `DEFERRED` (run when configured: mDNS, the PSK; other key types): the first use imports the real package
  and hands over to it.
dnspython (multiaddr's resolver) would also load aioquic for DNS over QUIC, which nothing here asks for;
`dns._features.force("doq", False)`, its documented switch, keeps it out. Install before libp2p is first
imported (`P2PNode.start` does); it changes nothing already imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import ipaddress
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

ABSENT = (
    "libp2p.transport.quic",
    "libp2p.transport.websocket",
    "libp2p.security.tls",
    "libp2p.relay",
    "libp2p.kad_dht",
    "libp2p.security.secio",
    "libp2p.security.insecure",
    "libp2p.crypto.key_exchange",
)
"""Packages dms never runs: QUIC (which also bypasses the PSK), WebSocket, TLS and AutoTLS, circuit relay, the DHT,
secio and plaintext (Noise only), secio's ECDH (fastecdsa)."""
DEFERRED = ("libp2p.discovery.mdns", "libp2p.security.pnet", "libp2p.crypto.rsa", "libp2p.crypto.secp256k1")
"""Packages loaded on first use: mDNS and the PSK (pycryptodome's Salsa20) run only when configured; RSA
(pycryptodome) and secp256k1 (coincurve) keys only when a peer presents one (dms's own identity and
js-libp2p's default are Ed25519)."""


def _is_private_ip(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return a.is_private or a.is_loopback or a.is_link_local


OVERRIDES: dict[str, dict[str, Any]] = {
    "libp2p.transport.quic.utils": {"is_quic_multiaddr": lambda _addr: False},  # new_host asks of each address
    "libp2p.relay.circuit_v2.nat": {"is_private_ip": _is_private_ip},  # basic_host's AutoTLS address filter
}
"""Real behaviour for the helpers of absent modules that code dms runs calls (no address of ours is QUIC)."""


def package_of(name: str, packages: Sequence[str]) -> str | None:
    """Pure: the one of `packages` that `name` is (or is inside), if any."""
    return next((p for p in packages if name == p or name.startswith(p + ".")), None)


class _StandIn(Exception):
    """Base of the stand-in names of an absent module: calling one raises ImportError.

    An exception class, because 0.8.1 names some of them in `except` clauses on paths we run (`net_stream.py`:
    `except (MuxedStreamReset, QUICStreamClosedError, ...)`): Python checks such a tuple only when an exception
    arrives, and a class that is not an exception there is a TypeError that ended the whole p2p thread (seen
    with 40 nodes: a stream read cancelled during negotiation). Nothing raises a stand-in, so it catches nothing.
    """

    _module = ""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise ImportError(f"{self._module} is not loaded: dms runs libp2p over TCP, Noise and yamux only")


class _DeferredMeta(type):
    def __getattr__(cls, attr: str) -> Any:
        """`Name.attr` (0.8.1's key deserializers are `RSAPublicKey.from_bytes`, looked up at import): a function
        that loads the real module when called."""
        if attr.startswith("__"):
            raise AttributeError(attr)

        def forward(*args: Any, **kwargs: Any) -> Any:
            return getattr(getattr(_load_real(cls._module), cls.__name__), attr)(*args, **kwargs)

        return forward


class _Deferred(metaclass=_DeferredMeta):
    """Base of the stand-in names of a deferred module: calling one loads the real module and calls its name."""

    _module = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return getattr(_load_real(cls._module), cls.__name__)(*args, **kwargs)


class _StandInModule(ModuleType):
    deferred = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        base = _Deferred if self.deferred else _StandIn
        stand_in = type(name, (base,), {"_module": self.__name__, "__module__": self.__name__})
        setattr(self, name, stand_in)
        return stand_in


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, deferred: bool) -> None:
        self._deferred = deferred

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = _StandInModule(spec.name)
        module.deferred = self._deferred
        module.__path__ = []  # a package, so that its submodules are stand-ins too
        for attr, value in OVERRIDES.get(spec.name, {}).items():
            setattr(module, attr, value)
        return module

    def exec_module(self, module: ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.deferred: tuple[str, ...] = DEFERRED

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("libp2p."):
            return None
        if package_of(fullname, ABSENT):
            return importlib.machinery.ModuleSpec(fullname, _StandInLoader(False), is_package=True)
        if package_of(fullname, self.deferred):
            return importlib.machinery.ModuleSpec(fullname, _StandInLoader(True), is_package=True)
        return None


_FINDER = _Finder()


def _load_real(name: str) -> ModuleType:
    """The real module `name` of a deferred package, from now on for every importer."""
    package = package_of(name, _FINDER.deferred)
    if package is not None:
        _FINDER.deferred = tuple(p for p in _FINDER.deferred if p != package)
        for n in [n for n in stand_ins() if package_of(n, (package,))]:
            del sys.modules[n]
    return importlib.import_module(name)


def install() -> None:
    """Answer for the unused packages from now on (idempotent). Call before libp2p is first imported."""
    if _FINDER not in sys.meta_path:
        import dns._features

        dns._features.force("doq", False)
        sys.meta_path.insert(0, _FINDER)


def stand_ins() -> list[str]:
    """The modules in `sys.modules` that are stand-ins now."""
    return sorted(n for n, m in list(sys.modules.items()) if isinstance(m, _StandInModule))
