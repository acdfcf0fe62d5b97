"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from dms.store.db import HEAD_REVISION, MIGRATIONS, migrate, stored_revision
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


def test_head_revision_is_alembics_head() -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_a_current_store_opens_without_alembic(tmp_path: Path) -> None:
    """Only a start that migrates loads Alembic (memory): a second start finds the schema current."""
    db = tmp_path / "m.sqlite3"
    assert stored_revision(db) is None
    migrate(db)
    assert stored_revision(db) == HEAD_REVISION
    probe = f"import sys; from pathlib import Path; from dms.store.db import migrate; migrate(Path({str(db)!r}));"
    probe += " print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako', 'pygments')))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
