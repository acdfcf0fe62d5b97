"""SQLAlchemy tables. Schema changes go through an Alembic migration in `migrations/versions/`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Dialect, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class OnboardingRow(Base):
    """The node's onboarding; at most one row (id 1)."""

    __tablename__ = "onboarding"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    payment_addr: Mapped[str] = mapped_column(String(42))
    ntx_price: Mapped[int] = mapped_column(BigInteger)
    cpu_mhz: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer, default=0)
    gpus: Mapped[list[Any]] = mapped_column(JSON)
    is_available: Mapped[bool] = mapped_column(Boolean)
    onboarded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AllocationRow(Base):
    """Resources a job holds out of the reservation, from admission until it ends."""

    __tablename__ = "allocations"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    cpu_mhz: Mapped[int] = mapped_column(Integer)
    memory_mb: Mapped[int] = mapped_column(Integer)
    disk_mb: Mapped[int] = mapped_column(Integer, default=0)
    gpus: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobColumns:
    """Columns both sides' job tables have. `tx_hash`: the deposit that paid for it (one job per deposit)."""

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SPJobRow(JobColumns, Base):
    """A job this node dispatches as service provider. Written only by the requester service."""

    __tablename__ = "sp_jobs"

    quote: Mapped[dict[str, Any]] = mapped_column(JSON)
    cp_peer_id: Mapped[str | None] = mapped_column(String(128))
    cp_seq: Mapped[int] = mapped_column(Integer, default=0)
    """The last provider event seen: where a re-attach resumes."""
    tx_hash: Mapped[str | None] = mapped_column(String(66), unique=True)


class CPJobRow(JobColumns, Base):
    """A job this node runs as compute provider. Written only by the provider service."""

    __tablename__ = "cp_jobs"

    sp_peer_id: Mapped[str] = mapped_column(String(128))
    tx_hash: Mapped[str | None] = mapped_column(String(66), unique=True)


class TransactionRow(Base):
    """A payment this node saw or sent for a job: the deposit it verified, the release or refund it sent.

    A release or refund is an outbox entry: written `pending` with the job's final state, then only the
    settlement worker moves it (`sent` once broadcast, `mined`, or `failed` once refused for good; back to
    `pending` after a failed attempt), counting its attempts.
    """

    __tablename__ = "transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    amount: Mapped[str | None] = mapped_column(String(80))
    """Wei, as decimal text: amounts exceed SQLite's integers."""
    state: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(String(1000))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(32))
    """Why a release or refund is owed (dms.payments.settle.Outcome)."""
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When a pending settlement is tried next."""


class JobEventRow(Base):
    """Every status change and log batch of a job, numbered, so a re-attached client misses nothing."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("side", "job_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    side: Mapped[str] = mapped_column(String(2))
    job_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
