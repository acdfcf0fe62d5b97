"""Errors of the peer-to-peer layer. Each message is one line a user can act on."""

from __future__ import annotations

from dataclasses import dataclass

from dms.errors import DmsError


@dataclass
class NetworkError(DmsError):
    """The network layer cannot do what was asked (start, reach a peer, ...)."""

    code: str = "network_error"


@dataclass
class UnknownPeer(NetworkError):
    """No connection to the peer and no address known for it."""

    code: str = "unknown_peer"


@dataclass
class PeerUnreachable(NetworkError):
    """The peer is known but did not answer in time, or refused the connection."""

    code: str = "peer_unreachable"


@dataclass
class StreamClosed(NetworkError):
    """The other side closed the stream, or the connection under it dropped."""

    code: str = "stream_closed"
