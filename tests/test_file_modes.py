"""Files holding personal data are created private: the SQLite database and its WAL and
SHM files, CSV exports and the ``.brief/`` folder (0600 files, 0700 folders), whatever
the umask. Each test sets the common umask 022, under which they used to be 0644/0755."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.store import add_subscriber, export_csv, open_store


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_sqlite_database_wal_shm_and_folder_are_private(tmp_path):
    state = tmp_path / "newsletter" / ".brief"
    engine = open_store(f"sqlite:///{state / 'brief.db'}")
    try:
        add_subscriber(engine, "ann@example.com", confirmed=True, source="test")
        with engine.connect() as conn:  # keep a connection open so -wal/-shm exist
            conn.exec_driver_sql("SELECT 1")
            assert {p.name for p in state.iterdir()} >= {"brief.db", "brief.db-wal", "brief.db-shm"}
            for name in ("brief.db", "brief.db-wal", "brief.db-shm"):
                assert oct(mode(state / name)) == oct(0o600), name
    finally:
        engine.dispose()
    assert oct(mode(state)) == oct(0o700)
    assert oct(mode(tmp_path / "newsletter")) == oct(0o700)


def test_an_existing_folder_keeps_its_mode(tmp_path):
    # Only what Brief creates is made private; a folder the operator made is theirs.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    open_store(f"sqlite:///{shared / 'brief.db'}").dispose()
    assert oct(mode(shared)) == oct(0o755)
    assert oct(mode(shared / "brief.db")) == oct(0o600)


def test_export_file_is_private_on_both_backends(store, tmp_path):
    add_subscriber(store, "ann@example.com", confirmed=True, source="test")
    fresh = tmp_path / "exports" / "all.csv"
    fresh.parent.mkdir()
    assert export_csv(store, fresh) == 1
    assert oct(mode(fresh)) == oct(0o600)
    # Overwriting a world-readable file leaves it private too: it now holds addresses.
    old = tmp_path / "old.csv"
    old.write_text("x\n")
    old.chmod(0o644)
    export_csv(store, old)
    assert oct(mode(old)) == oct(0o600)
    assert "ann@example.com" in old.read_text(encoding="utf-8")


def test_cli_creates_brief_folder_database_and_export_private(brief, project):
    assert brief("subscribers", "add", "ann@example.com", "--confirmed", "--source", "t").code == 0
    assert oct(mode(project / ".brief")) == oct(0o700)
    assert oct(mode(project / ".brief" / "brief.db")) == oct(0o600)
    target = project / "people.csv"
    assert brief("subscribers", "export", "--out", str(target)).code == 0
    assert oct(mode(target)) == oct(0o600)


def test_outbox_creating_the_state_folder_makes_it_private(settings):
    from pipeline.providers import load_provider

    shutil.rmtree(settings.root / ".brief")  # the fixture's database: the outbox comes first
    provider = load_provider(settings)
    provider.open()
    provider.close()
    assert oct(mode(settings.root / ".brief")) == oct(0o700)
    assert oct(mode(settings.root / ".brief" / "outbox")) == oct(0o700)


def test_render_creating_the_state_folder_makes_it_private(brief, project):
    shutil.rmtree(project / ".brief")  # the fixture's database: render comes first
    assert brief("render", "1").code == 0
    assert oct(mode(project / ".brief")) == oct(0o700)
