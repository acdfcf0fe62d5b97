"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from dms.store.db import migrate
from dms.store.models import Base


def test_migrations_match_models(tmp_path: Path) -> None:
    db = tmp_path / "m.sqlite3"
    migrate(db)
    migrate(db)  # idempotent: a second start applies nothing
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
