"""Composition root: builds every component in order, and stops them in reverse.

Nothing else wires components together; domain packages receive what they need as arguments.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from aiohttp import web

from dms import __version__
from dms.api.context import ApiContext
from dms.api.server import build_web_app
from dms.config import Settings
from dms.onboarding.hardware import measure
from dms.onboarding.service import OnboardingService
from dms.store.allocations import AllocationStore
from dms.store.db import Store, StoreError
from dms.store.onboarding import OnboardingStore

log = logging.getLogger(__name__)

METADATA_NAME = "metadataV2.json"
SHUTDOWN_GRACE_S = 10.0


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


class Daemon:
    """One DMS node. `await start()`, then `await stop()`; `url` is where REST listens."""

    def __init__(self, settings: Settings, config_source: str = "defaults") -> None:
        self.settings = settings
        self.config_source = config_source
        self.url = ""
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
            raise StartupError(str(exc)) from exc
        self._stack.push_async_callback(store.close)
        machine = await machine_task
        log.info(
            "machine: %d cores, %d MHz, %d MB memory, %d GPU(s)",
            machine.cores,
            machine.cpu_mhz,
            machine.memory_mb,
            len(machine.gpus),
        )

        onboarding = OnboardingService(
            machine,
            OnboardingStore(store),
            AllocationStore(store),
            data_dir / METADATA_NAME,
            s.p2p.channels,
            __version__,
        )
        await onboarding.start()

        context = ApiContext(settings=s, onboarding=onboarding, database_path=str(store.path), version=__version__)
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
