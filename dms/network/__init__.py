"""The peer-to-peer layer: a libp2p host in its own trio thread behind an asyncio facade (`P2PNode`).

Importing this package loads neither libp2p nor trio; `P2PNode.start()` does.
"""

from dms.network.errors import NetworkError, PeerUnreachable, UnknownPeer
from dms.network.model import (
    Advert,
    CapacityRecord,
    ConnectedPeer,
    GpuOffer,
    NetworkMetrics,
    PeerRecordView,
)
from dms.network.node import P2PNode
from dms.network.settings import KNOWN_CHANNELS, NetworkSettings

__all__ = [
    "KNOWN_CHANNELS",
    "Advert",
    "CapacityRecord",
    "ConnectedPeer",
    "GpuOffer",
    "NetworkError",
    "NetworkMetrics",
    "NetworkSettings",
    "P2PNode",
    "PeerRecordView",
    "PeerUnreachable",
    "UnknownPeer",
]
