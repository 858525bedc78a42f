"""Fixtures for the public side: a newsletter with sent issues, webhook keys, a live server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


def _set_status(path: Path, status: str) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(
        re.sub(r"(?m)^status: \w+$", f"status: {status}", text, count=1), encoding="utf-8"
    )


def _write_issue(
    root: Path, number: int, day: str, glossary: str, museum: str, status: str, subject: str
) -> Path:
    path = root / "issues" / f"{number:03d}-{day}.md"
    path.write_text(
        "---\n"
        f"number: {number}\n"
        f"date: {day}\n"
        f"subject: '{subject}'\n"
        f"preheader: 'Preheader of issue {number}'\n"
        f"glossary:\n- {glossary}\n"
        f"museum:\n- {museum}\n"
        f"status: {status}\n"
        "---\n\n"
        f"Intro of issue {number}: **{glossary}** and {museum}.\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def published(project: Path) -> Path:
    """The shipped content with issues 1 and 2 sent and issue 3 still a draft."""
    issues = project / "issues"
    first = sorted(issues.glob("001-*.md"))
    if first:
        _set_status(first[0], "sent")
    else:
        _write_issue(
            project,
            1,
            "2026-12-02",
            "deep-learning",
            "knight-capital",
            "sent",
            "Deep Learning · Knight Capital",
        )
    for stale in issues.glob("00[23]-*.md"):
        stale.unlink()
    _write_issue(
        project,
        2,
        "2026-12-16",
        "fine-tuning",
        "mars-climate-orbiter",
        "sent",
        "Fine-Tuning · Mars Climate Orbiter",
    )
    _write_issue(
        project,
        3,
        "2026-12-30",
        "hallucination",
        "zillow-offers",
        "draft",
        "Hallucination · Zillow Offers",
    )
    return project


@pytest.fixture
def published_settings(published: Path):
    from pipeline.config import load_settings

    return load_settings(published / "brief.toml", env={})


@pytest.fixture
def published_library(published: Path, published_settings):
    from functools import partial

    from pipeline.calendar import is_slot_date
    from pipeline.content import load_library

    return load_library(published, partial(is_slot_date, published_settings.schedule))
