"""py-libp2p without the parts dms never runs (dms/network/lean.py), checked in a fresh interpreter each."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from dms.network.lean import package_of

HEAVY = ("aioquic", "zeroconf", "httpx", "requests", "fastecdsa", "Crypto", "coincurve", "trio_websocket")


def fresh(code: str) -> dict[str, object]:
    """Run `code` in a new interpreter after `lean.install()` and the network's imports; its JSON answer."""
    prelude = "import json, sys\nfrom dms.network import lean\nlean.install()\n"
    prelude += "import dms.network.host, dms.network.service\n"
    out = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_package_of() -> None:
    packages = ("libp2p.relay", "libp2p.transport.quic")
    assert package_of("libp2p.relay", packages) == "libp2p.relay"
    assert package_of("libp2p.transport.quic.utils", packages) == "libp2p.transport.quic"
    assert package_of("libp2p.relayx", packages) is None
    assert package_of("libp2p.transport.tcp", packages) is None


def test_the_network_loads_none_of_the_unused_packages() -> None:
    seen = fresh(f"print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules]}}))")
    assert seen == {"loaded": []}


def test_an_absent_module_says_so_when_used() -> None:
    seen = fresh(
        """
        from libp2p.transport.quic.transport import QUICTransport
        try:
            QUICTransport()
        except ImportError as e:
            print(json.dumps({"error": str(e)}))
        """
    )
    assert (
        seen["error"] == "libp2p.transport.quic.transport is not loaded: dms runs libp2p over TCP, Noise and yamux only"
    )


def test_deferred_key_types_load_when_a_peer_presents_one() -> None:
    """RSA and secp256k1 keys (pycryptodome, coincurve) load on first use and then work as the real ones."""
    seen = fresh(
        """
        before = [m for m in ("Crypto", "coincurve") if m in sys.modules]
        from libp2p.crypto.serialization import deserialize_public_key
        from libp2p.crypto.rsa import create_new_key_pair as rsa_pair
        from libp2p.crypto.secp256k1 import create_new_key_pair as secp_pair
        ok = []
        for kp in (rsa_pair(1024), secp_pair()):
            back = deserialize_public_key(kp.public_key.serialize())
            ok.append([type(back).__name__, back.verify(b"m", kp.private_key.sign(b"m"))])
        print(json.dumps({"before": before, "ok": ok}))
        """
    )
    assert seen == {"before": [], "ok": [["RSAPublicKey", True], ["Secp256k1PublicKey", True]]}


def test_an_absent_exception_class_can_be_named_in_an_except_clause() -> None:
    """0.8.1's net_stream.py catches QUIC errors on every stream read; a stand-in must not break that clause."""
    seen = fresh(
        """
        from libp2p.transport.quic.exceptions import QUICStreamClosedError, QUICStreamResetError
        try:
            raise ValueError("a real error")
        except (QUICStreamClosedError, QUICStreamResetError):
            caught = "stand-in"
        except ValueError:
            caught = "ValueError"
        print(json.dumps({"caught": caught}))
        """
    )
    assert seen == {"caught": "ValueError"}
