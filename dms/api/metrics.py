"""`GET /metrics`: Prometheus text, read from the components' own counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dms.api.context import CONTEXT, ApiContext

COUNTERS = {
    "records_accepted": "Capacity records accepted from peers",
    "records_published": "Capacity records we published",
    "connections_trimmed": "Connections closed to stay under p2p.conn_high",
    "peers_unresponsive": "Times a connected peer stopped answering pings",
    "pings": "Liveness pings answered by connected peers",
    "pings_served": "Liveness pings of connected peers that we answered",
    "bad_streams": "Streams on our protocols that sent garbage, too much, or nothing in time",
    "bad_handshakes": "Inbound connections that failed the security or protocol handshake",
    "peers_refused": "Connections refused: peer id not in p2p.allowed_peers",
    "dial_failures": "Failed dials",
}


class DmsCollector(Collector):
    def __init__(self, context: ApiContext) -> None:
        self._c = context

    def collect(self) -> Iterator[Metric]:
        m = self._c.node.metrics
        for name, doc in COUNTERS.items():
            yield CounterMetricFamily(f"dms_p2p_{name}", doc, value=getattr(m, name))
        rejected = CounterMetricFamily(
            "dms_p2p_records_rejected", "Capacity records dropped, by reason", labels=["reason"]
        )
        for reason, n in sorted(m.records_rejected.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield GaugeMetricFamily("dms_p2p_peers_connected", "Peers with an open connection", value=m.peers_connected)
        yield GaugeMetricFamily("dms_p2p_peers_known", "Peers with a current capacity record", value=m.peers_known)
        rtt = GaugeMetricFamily(
            "dms_peer_rtt_seconds", "Latest ping round trip to each connected peer", labels=["peer_id"]
        )
        for peer_id, seconds in sorted(self._c.node.rtts().items()):
            rtt.add_metric([peer_id], seconds)
        yield rtt
        t = self._c.transfer.stats
        yield CounterMetricFamily(
            "dms_artifact_transfers_refused", "Artifact transfers whose bytes did not match their hash", value=t.refused
        )
        yield CounterMetricFamily("dms_artifact_transfers_fetched", "Artifacts fetched from peers", value=t.fetched)
        yield CounterMetricFamily("dms_artifact_transfers_resumed", "Transfers resumed at an offset", value=t.resumed)
        yield CounterMetricFamily("dms_artifact_bytes_received", "Artifact bytes received from peers", value=t.bytes_in)
        yield CounterMetricFamily("dms_artifact_bytes_sent", "Artifact bytes sent to peers", value=t.bytes_out)
        yield CounterMetricFamily(
            "dms_artifact_transfers_direct", "Artifact transfers sent or received on the direct path", value=t.direct
        )
        yield CounterMetricFamily(
            "dms_artifact_direct_strangers",
            "Connections to a direct-transfer listener closed for want of the token",
            value=t.direct_strangers,
        )
        yield GaugeMetricFamily("dms_artifact_store_bytes", "Bytes in the artifact store", value=self._c.artifacts.used)
        yield GaugeMetricFamily("dms_jobs_running", "Jobs running on this provider", value=self._c.provider.running)
        yield GaugeMetricFamily(
            "dms_executor_available",
            "1 when the Docker engine answers",
            value=int(self._c.provider.executor_problem is None),
        )


async def metrics(request: web.Request) -> web.Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DmsCollector(request.app[CONTEXT]))
    return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")
