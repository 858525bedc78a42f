"""Fixtures for the daemon's tests: a private newsletter with its own SQLite store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

NEW_YORK = ZoneInfo("America/New_York")


def local(text: str) -> datetime:
    """An aware datetime in the newsletter's zone (the project's brief.toml)."""
    return datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)


def set_status(path: Path, status: str) -> None:
    """Change an issue file's status as an editor would."""
    from pipeline.content.assemble import mark_status

    mark_status(path, status)


def with_schedule(settings, **changes):
    """Settings with some [schedule] values changed."""
    return replace(settings, schedule=replace(settings.schedule, **changes))


@pytest.fixture
def sched_lib(settings) -> Callable:
    """Load the project's content fresh (the daemon reloads it every tick)."""
    from pipeline.content.library import load_content

    return partial(load_content, settings)


@pytest.fixture
def sched_store(settings):
    """The project's SQLite store, migrated to head."""
    from pipeline.store import open_store

    engine = open_store(settings.database.url)
    yield engine
    engine.dispose()


@pytest.fixture
def audience3(sched_store, settings):
    """Three confirmed subscribers on the default list."""
    from pipeline.store import add_subscriber

    for i in range(3):
        add_subscriber(
            sched_store,
            f"reader{i}@example.org",
            f"Reader {i}",
            list_name=settings.newsletter.default_list,
            confirmed=True,
        )
    return 3


def outbox_files(settings) -> list[Path]:
    """Every message the outbox provider wrote."""
    folder = settings.root / settings.provider.table("outbox")["dir"]
    return sorted(p for p in folder.rglob("*.eml")) if folder.exists() else []
