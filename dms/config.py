"""Typed settings: `dms_config.json` (NuNet's shape, extended) overlaid by `DMS_*` environment variables.

The file is found by `find_config_file` in the documented search order; every key is validated at start
and an error names the key and the file (`ConfigError`). Components receive the parts they need; none of
them reads the environment or the file themselves.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from dms import boundedjson, limits
from dms.network.settings import KNOWN_CHANNELS
from dms.origins import DASHBOARD_ORIGINS, canonical_origin, is_loopback

CONFIG_ENV = "DMS_CONFIG"
CONFIG_NAME = "dms_config.json"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class General(_Section):
    data_dir: Path = Field(Path.home() / ".nunet", description="Where the store, keys and metadata live.")
    debug: bool = False


class Rest(_Section):
    addr: str = "127.0.0.1"
    port: int = Field(9999, ge=0, le=65535, description="0 picks a free port (tests).")
    allowed_origins: list[str] = Field(
        default_factory=lambda: list(DASHBOARD_ORIGINS),
        description="Origins besides the daemon's own whose pages may call it (CORS, websocket): scheme://host:port.",
    )
    hostnames: list[str] = Field(
        default_factory=list,
        description="Names the daemon is reached by besides its address and localhost (the Host header check).",
    )
    api_token: str | None = Field(
        None, min_length=16, description="Required on every API call when set; must be set off loopback."
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        return [canonical_origin(o) for o in origins]

    @field_validator("hostnames")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        return [n.strip().rstrip(".").lower() for n in names if n.strip()]

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Rest:
        if self.api_token is None and not is_loopback(self.addr):
            raise ValueError(
                f"rest.addr {self.addr} is not a loopback address: set rest.api_token (at least 16 characters), "
                "which every REST and websocket call must then carry"
            )
        return self


class P2P(_Section):
    listen_address: list[str] = Field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/9000"])
    bootstrap_peers: list[str] = Field(default_factory=list)
    mdns: bool = False
    channels: list[str] = Field(default_factory=lambda: list(KNOWN_CHANNELS), min_length=1)
    heartbeat_s: float = Field(2.0, gt=0, le=60)
    psk: str | None = None
    allowed_peers: list[str] = Field(default_factory=list)
    record_refresh_s: float = Field(
        120.0, ge=1, le=86_400, description="Capacity records go out on change, and this often otherwise."
    )
    conn_low: int = Field(3, ge=1, le=10_000, description="Connection count low water mark.")
    conn_high: int = Field(5, ge=1, le=10_000, description="Connection count high water mark (trimmed above).")

    @model_validator(mode="after")
    def _water_marks_in_order(self) -> P2P:
        if self.conn_low > self.conn_high:
            raise ValueError(f"p2p.conn_low ({self.conn_low}) is above p2p.conn_high ({self.conn_high})")
        return self


class Job(_Section):
    log_batch_ms: int = Field(200, ge=10, le=10_000)
    quote_ttl_s: float = Field(600.0, ge=1, le=86_400, description="A quote not paid by then expires.")
    log_budget_kb: int = Field(
        10_240, ge=4, le=1_048_576,
        description="Output kept and sent per job (KiB of text): past it the head and the tail are kept and "
        "the middle is dropped with a marker saying how much.",
    )  # fmt: skip
    log_rate_kb_s: int = Field(1024, ge=1, le=1_048_576, description="Output sent live per job (KiB/s).")


class Payment(_Section):
    mode: Literal["none", "escrow"] = "none"
    rpc_url: str | None = Field(None, description="JSON-RPC endpoint of the chain (escrow mode).")
    chain_id: int | None = Field(None, ge=1, le=limits.MAX_CHAIN_ID)
    escrow_address: str | None = Field(None, pattern=r"^0x[0-9a-fA-F]{40}$")
    # A few hundred blocks is past any reorg seen on a live chain; an hour of waiting is past any mempool.
    required_confirmations: int = Field(1, ge=0, le=1000)
    timeout_s: float = Field(120.0, gt=0, le=3600, description="How long a pending deposit is waited for.")

    @model_validator(mode="after")
    def _escrow_needs_a_chain(self) -> Payment:
        if self.mode == "escrow":
            missing = [k for k in ("rpc_url", "chain_id", "escrow_address") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"mode escrow needs {', '.join('payment.' + k for k in missing)}")
        return self


class Docker(_Section):
    host: str | None = Field(None, description="Docker API URL; DOCKER_HOST or the local socket when unset.")
    allow_network: bool = False
    image_allowlist: list[str] = Field(default_factory=list)


class Artifacts(_Section):
    quota_mb: float = Field(10240, gt=0, description="MiB the artifact store may hold in all.")
    max_age_h: float = Field(168, gt=0, description="An artifact unused for this long is removed (unless pinned).")
    max_upload_mb: float = Field(1024, gt=0, description="Largest upload or transfer, MiB.")
    stall_s: float = Field(30, gt=0, le=3600, description="A transfer silent this long is reopened at its offset.")
    direct: bool = Field(
        True,
        description="Move artifact bytes over a one-off encrypted TCP connection offered on the libp2p stream "
        "(about ten times faster; docs/artifacts.md). Off: every byte goes over libp2p.",
    )
    outputs_max_mb: float = Field(1024, gt=0, description="Most a job may leave in /outputs, MiB.")
    url_max_mb: float = Field(1024, gt=0, description="Largest input fetched from a URL, MiB.")
    url_timeout_s: float = Field(300, gt=0, description="Longest fetch of one input URL, seconds.")
    allow_addresses: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) an input URL may reach although loopback, link-local or private.",
    )

    @field_validator("allow_addresses")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for v in values:
            try:
                ipaddress.ip_network(v, strict=False)
            except ValueError as exc:
                raise ValueError(f"{v!r} is not a network (CIDR): {exc}") from None
        return values


class Settings(BaseSettings):
    """The whole configuration. Environment variables override the file: `DMS_REST__PORT=9998`."""

    model_config = SettingsConfigDict(env_prefix="DMS_", env_nested_delimiter="__", extra="forbid")

    general: General = Field(default_factory=General)
    rest: Rest = Field(default_factory=Rest)
    p2p: P2P = Field(default_factory=P2P)
    job: Job = Field(default_factory=Job)
    payment: Payment = Field(default_factory=Payment)
    docker: Docker = Field(default_factory=Docker)
    artifacts: Artifacts = Field(default_factory=Artifacts)

    @field_validator("general")
    @classmethod
    def _absolute_data_dir(cls, general: General) -> General:
        return general.model_copy(update={"data_dir": general.data_dir.expanduser()})

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; the environment must win over them.
        return env_settings, init_settings


def search_path(explicit: str | None = None) -> list[Path]:
    """Candidate config files, most specific first (docs/architecture.md: Configuration)."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get(CONFIG_ENV):
        candidates.append(Path(os.environ[CONFIG_ENV]))
    candidates += [
        Path.cwd() / CONFIG_NAME,
        Path.home() / ".nunet" / CONFIG_NAME,
        Path("/etc/nunet") / CONFIG_NAME,
    ]
    return candidates


def find_config_file(explicit: str | None = None) -> Path | None:
    """The first existing file of the search path; an explicit path must exist."""
    if explicit and not Path(explicit).is_file():
        raise ConfigError(f"{explicit}: config file not found")
    return next((p for p in search_path(explicit) if p.is_file()), None)


def load_settings(explicit: str | None = None) -> tuple[Settings, Path | None]:
    """Find, read and validate the configuration. Raises ConfigError naming the file and key."""
    path = find_config_file(explicit)
    data: dict[str, Any] = {}
    where = str(path) if path else "defaults"
    if path is not None:
        try:
            data = boundedjson.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        except boundedjson.JSONRefused as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a JSON object")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_errors(exc)}") from exc
    if path is not None and not settings.general.data_dir.is_absolute():
        # A relative data dir is relative to its config file, not to wherever the daemon was started.
        settings.general.data_dir = (path.parent / settings.general.data_dir).resolve()
    return settings, path


def describe_errors(exc: ValidationError) -> str:
    """`rest.port: Input should be less than or equal to 65535; ...`"""
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{key}: {err['msg']}")
    return "; ".join(parts)
