"""Composition root: builds every component in order, and stops them in reverse.

Order: data dir, store, machine measurement, onboarding, payments, the executors (Docker and WASM behind
one ExecutorSet) and the module store, provider (adopts running containers, reconciles leftovers), the
p2p node (serving the deployment protocol), requester (job owners, settlement worker), then REST.
Nothing else wires components together; domain packages receive what they need as arguments.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from aiohttp import web

from dms import __version__
from dms.api.context import ApiContext
from dms.api.server import build_web_app
from dms.artifacts import PROTOCOL as ARTIFACT_PROTOCOL
from dms.artifacts import ArtifactStore, ArtifactTransfer, StoreLimits
from dms.artifacts.checkpoints import JobCheckpoints
from dms.artifacts.direct import listen_host
from dms.artifacts.outputs import JobOutputs
from dms.artifacts.staging import JobFiles
from dms.artifacts.urls import UrlLimits
from dms.capacity import advert_for, candidates_from
from dms.config import Settings
from dms.errors import DmsError
from dms.executor.base import Executor
from dms.executor.docker import DockerExecutor
from dms.executor.modules import ModuleStore
from dms.executor.router import ExecutorSet
from dms.executor.wasm import WasmExecutor
from dms.jobs.logbudget import LogLimits
from dms.jobs.protocol import PROTOCOL
from dms.jobs.provider import ProviderService, ProviderSettings
from dms.jobs.requester import RequesterService, RequesterSettings
from dms.jobs.sp_files import FileHooks
from dms.network import NetworkError, NetworkSettings, P2PNode
from dms.onboarding.hardware import measure
from dms.onboarding.service import OnboardingService
from dms.payments.gate import EscrowPayments, NoPayments, PaymentGate
from dms.payments.wallet import Wallet
from dms.store.allocations import AllocationStore
from dms.store.db import Store, StoreError
from dms.store.jobs import EventLog, JobStore, TransactionLog
from dms.store.models import CPJobRow, SPJobRow
from dms.store.onboarding import OnboardingStore

log = logging.getLogger(__name__)

METADATA_NAME = "metadataV2.json"
IDENTITY_NAME = "p2p_identity.key"
JOB_DISKS_NAME = "job-disks"  # running jobs' /workspace images (sparse files)
MODULES_DIR = "modules"
WASM_WORK_DIR = "wasm-jobs"
SHUTDOWN_GRACE_S = 10.0
MIB = 1024 * 1024
ARTIFACT_CLEAN_EVERY_S = 600.0


class StartupError(Exception):
    """The daemon cannot start; the message is one line a user can act on."""


def check_data_dir(path: Path, source: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise StartupError(
            f"data dir {path} is not writable: {exc.strerror or exc} (general.data_dir in {source})"
        ) from exc


def instance_name(data_dir: Path) -> str:
    """A stable name for this DMS in container labels: one per data dir, the same after a restart."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def network_settings(s: Settings, channel: str | None) -> NetworkSettings:
    p = s.p2p
    return NetworkSettings(
        listen_addresses=tuple(p.listen_address),
        bootstrap_peers=tuple(p.bootstrap_peers),
        mdns=p.mdns,
        channel=channel,
        known_channels=tuple(p.channels),
        heartbeat_s=p.heartbeat_s,
        psk=p.psk,
        allowed_peers=tuple(p.allowed_peers),
        record_refresh_s=p.record_refresh_s,
        conn_low=p.conn_low,
        conn_high=p.conn_high,
    )


def build_payments(s: Settings, data_dir: Path) -> PaymentGate:
    """No payments, or the escrow on the configured chain with this node's wallet as arbiter."""
    p = s.payment
    if p.mode == "none":
        return NoPayments()
    from dms.payments.settle import Settler
    from dms.payments.verify import EscrowVerifier

    assert p.rpc_url is not None and p.chain_id is not None and p.escrow_address is not None  # config checked
    try:
        wallet = Wallet.load_or_create(data_dir)
    except DmsError as exc:
        raise StartupError(str(exc)) from exc
    verifier = EscrowVerifier.connect(
        p.rpc_url, chain_id=p.chain_id, escrow_address=p.escrow_address,
        required_confirmations=p.required_confirmations,
    )  # fmt: skip
    settler = Settler.connect(p.rpc_url, wallet.account(), chain_id=p.chain_id, escrow_address=p.escrow_address)
    log.info("escrow payments on chain %s, escrow %s, wallet %s", p.chain_id, p.escrow_address, wallet.address)
    return EscrowPayments(verifier, settler, arbiter=wallet.address, timeout_s=p.timeout_s)


class CapacityPublisher:
    """Re-advertises our capacity whenever onboarding or a job changes it; serialised, never raises."""

    def __init__(self) -> None:
        self.node: P2PNode | None = None
        self.onboarding: OnboardingService | None = None
        self.provider: ProviderService | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> None:
        if self.node is None or self.onboarding is None or self.provider is None:
            return  # still starting: the first advert goes out once everything is up
        async with self._lock:
            advert = advert_for(
                await self.onboarding.get(),
                await self.onboarding.free(),
                self.onboarding.machine,
                self.provider.working_executors,
            )
            try:
                await self.node.advertise(advert)
            except DmsError as exc:
                log.warning("cannot advertise capacity: %s", exc)


class Daemon:
    """One DMS node. `await start()`, then `await stop()`; `url` is where REST listens."""

    def __init__(self, settings: Settings, config_source: str = "defaults") -> None:
        self.settings = settings
        self.config_source = config_source
        self.url = ""
        self.node: P2PNode | None = None
        self._stack = AsyncExitStack()

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        s = self.settings
        data_dir = s.general.data_dir
        check_data_dir(data_dir, self.config_source)

        store = Store(data_dir)
        machine_task = asyncio.create_task(asyncio.to_thread(measure, data_dir))
        try:
            await store.open()
        except StoreError as exc:
            machine_task.cancel()
            meta = data_dir / METADATA_NAME
            hint = (
                f"; the onboarding can be redone from {meta} (nunet onboard with its values)" if meta.exists() else ""
            )
            raise StartupError(f"{exc}{hint}") from exc
        self._stack.push_async_callback(store.close)
        machine = await machine_task
        log.info(
            "machine: %d cores, %d MHz, %d MB memory, %d GPU(s)",
            machine.cores, machine.cpu_mhz, machine.memory_mb, len(machine.gpus),
        )  # fmt: skip

        publish = CapacityPublisher()
        allocations = AllocationStore(store)
        onboarding = OnboardingService(
            machine, OnboardingStore(store), allocations, data_dir / METADATA_NAME, s.p2p.channels, __version__,
            on_change=publish,
        )  # fmt: skip
        await onboarding.start()

        a = s.artifacts
        artifacts = ArtifactStore(data_dir / "artifacts", StoreLimits(int(a.quota_mb * MIB), a.max_age_h * 3600))
        await asyncio.to_thread(artifacts.open)
        cleaner = asyncio.create_task(artifacts.clean_forever(min(ARTIFACT_CLEAN_EVERY_S, a.max_age_h * 360)))
        self._stack.callback(cleaner.cancel)

        rec = await onboarding.get()
        try:
            node = P2PNode(
                network_settings(s, rec.channel if rec else None),
                identity_path=data_dir / IDENTITY_NAME,
                version=__version__,
            )
        except DmsError as exc:
            raise StartupError(f"p2p settings: {exc} (in {self.config_source})") from exc
        transfer = ArtifactTransfer(
            artifacts,
            node,
            stall_s=a.stall_s,
            max_size=int(a.max_upload_mb * MIB),
            direct_host=listen_host(s.p2p.listen_address[0]) if a.direct else None,
        )
        url_limits = UrlLimits.of(int(a.url_max_mb * MIB), a.url_timeout_s, a.allow_addresses)
        files = JobFiles(artifacts, transfer, data_dir / "jobs", url_limits, int(a.outputs_max_mb * MIB))
        outputs = JobOutputs(artifacts.root / "jobs", transfer)
        await asyncio.to_thread(outputs.open)
        checkpoints = JobCheckpoints(artifacts.root / "checkpoints", transfer)
        await asyncio.to_thread(checkpoints.open)
        self._stack.push_async_callback(checkpoints.close)

        payments = build_payments(s, data_dir)
        self._stack.push_async_callback(payments.close)
        docker = DockerExecutor(
            instance_name(data_dir), s.docker.host, s.job.log_batch_ms / 1000, disk_dir=data_dir / JOB_DISKS_NAME
        )
        self._stack.push_async_callback(docker.close)
        modules = ModuleStore(data_dir / MODULES_DIR)
        wasm = WasmExecutor(modules, data_dir / WASM_WORK_DIR, s.job.log_batch_ms / 1000)
        self._stack.push_async_callback(wasm.close)
        await wasm.start(wait=False)
        executor: Executor = ExecutorSet({"docker": docker, "wasm": wasm})
        provider = ProviderService(
            onboarding, allocations, executor, JobStore(store, CPJobRow), EventLog(store),
            ProviderSettings(s.docker.allow_network, tuple(s.docker.image_allowlist), s.p2p.heartbeat_s,
                             LogLimits(budget=s.job.log_budget_kb * 1024, rate=s.job.log_rate_kb_s * 1024)),
            publish, payments, modules, files,
        )  # fmt: skip
        await provider.start()
        self._stack.push_async_callback(provider.stop)

        node.handle(PROTOCOL, provider.serve)
        node.handle(ARTIFACT_PROTOCOL, transfer.serve)
        try:
            await node.start()
        except NetworkError as exc:
            raise StartupError(f"{exc} (p2p.listen_address in {self.config_source})") from exc
        self._stack.push_async_callback(node.stop)
        self.node = node

        async def channel() -> str:
            return (await onboarding.require()).channel

        transactions = TransactionLog(store)
        requester = RequesterService(
            JobStore(store, SPJobRow), EventLog(store), lambda: candidates_from(node.peers()), channel, node,
            RequesterSettings(s.p2p.heartbeat_s, quote_ttl_s=s.job.quote_ttl_s), payments, transactions, modules,
            FileHooks(outputs.receive, checkpoints.receive, checkpoints.latest),
        )  # fmt: skip
        await requester.start()
        self._stack.push_async_callback(requester.stop)
        node.protect_from(lambda: provider.peers_with_jobs | requester.peers_with_jobs)  # never trimmed mid-job

        publish.node, publish.onboarding, publish.provider = node, onboarding, provider
        await publish()

        context = ApiContext(
            settings=s, onboarding=onboarding, provider=provider, requester=requester, node=node,
            transactions=transactions, database_path=str(store.path), version=__version__, modules=modules,
            artifacts=artifacts, transfer=transfer, outputs=outputs, checkpoints=checkpoints,
        )  # fmt: skip
        await self._serve(build_web_app(context))

    async def _serve(self, app: web.Application) -> None:
        rest = self.settings.rest
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, rest.addr, rest.port, reuse_port=False)
        try:
            await site.start()
        except OSError as exc:
            where = f"{rest.addr}:{rest.port}"
            if exc.errno == errno.EADDRINUSE:
                reason = f"REST address {where} is already in use; is another nunet-dms running?"
            else:
                reason = f"cannot listen on {where}: {exc.strerror or exc}"
            raise StartupError(f"{reason} (rest.addr/rest.port in {self.config_source})") from exc
        sock = runner.addresses[0]
        self.url = f"http://{sock[0]}:{sock[1]}"

    async def stop(self) -> None:
        """Finish in-flight requests (up to the grace period), then close everything in reverse order."""
        await self._stack.aclose()
