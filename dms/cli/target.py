"""Which daemon the CLI talks to: `--dms URL` / `$NUNET_DMS_URL`, else rest.addr/rest.port of the config.

The API token: `$NUNET_DMS_TOKEN`, else `rest.api_token` of the config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dms.cli.client import DmsClient

URL_ENV = "NUNET_DMS_URL"
TOKEN_ENV = "NUNET_DMS_TOKEN"
TIMEOUT_S = 10.0
# A daemon listening on every interface is reached through loopback.
WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


@dataclass(frozen=True)
class Target:
    url: str | None
    """Given on the command line or in the environment; None: read the config."""
    url_source: str
    config: Path | None

    def client(self) -> DmsClient:
        """The client for the chosen daemon. Raises ConfigError when the config must be read and is bad."""
        from dms.cli.client import DmsClient  # imported here: `nunet --help` needs neither it nor the config

        if self.url is not None:
            return DmsClient(self.url, TIMEOUT_S, self.url_source, os.environ.get(TOKEN_ENV))
        from dms.config import load_settings  # only now: validating the config costs ~0.1 s of imports

        settings, path = load_settings(str(self.config) if self.config else None)
        source = f"from rest.addr/rest.port in {path}" if path else "default rest.addr/rest.port: no config file found"
        token = os.environ.get(TOKEN_ENV) or settings.rest.api_token
        return DmsClient(rest_url(settings.rest.addr, settings.rest.port), TIMEOUT_S, source, token)


def rest_url(addr: str, port: int) -> str:
    host = WILDCARDS.get(addr, addr)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"
