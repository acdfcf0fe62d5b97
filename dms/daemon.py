"""`nunet-dms`: load the config, start the node, serve until SIGTERM/SIGINT, stop cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from dms import __version__
from dms.app import Daemon, StartupError
from dms.config import ConfigError, load_settings
from dms.payments.ethlib import keep_recursion_limit
from dms.systemd import notify, setup_logging, watchdog_interval, watchdog_loop

log = logging.getLogger("dms")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nunet-dms", description="Device Management Service daemon")
    p.add_argument("--config", "-c", metavar="PATH", help="config file (default: the search path in the README)")
    p.add_argument("--version", action="version", version=f"nunet-dms {__version__}")
    return p.parse_args(argv)


async def serve(daemon: Daemon) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await daemon.start()
    log.info("nunet-dms %s ready on %s (config: %s)", __version__, daemon.url, daemon.config_source)
    notify(f"READY=1\nSTATUS=serving REST on {daemon.url}")
    interval = watchdog_interval()
    pinger = asyncio.create_task(watchdog_loop(interval)) if interval else None
    await stop.wait()
    log.info("stopping")
    notify("STOPPING=1")
    if pinger:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
    await daemon.stop()
    log.info("stopped")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    keep_recursion_limit()  # before anything can import eth-account or web3 (py_ecc raises the limit)
    try:
        settings, path = load_settings(args.config)
    except ConfigError as exc:
        print(f"nunet-dms: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    setup_logging(settings.general.debug)
    daemon = Daemon(settings, str(path) if path else "built-in defaults")
    try:
        asyncio.run(serve(daemon))
    except StartupError as exc:
        print(f"nunet-dms: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
