"""The queue, the forecast, and assembling an issue file from it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from pipeline.content.assemble import assemble, build_queue, forecast, mark_status
from pipeline.content.library import load_content
from pipeline.errors import BriefError

BEFORE_FIRST = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
AFTER_FIRST = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def library(settings):
    return load_content(settings)


def test_queue_orders_by_priority_then_queued_date_then_slug(settings):
    q = build_queue(library(settings))
    # deep-learning and knight-capital are taken by the shipped issue 001
    assert "deep-learning" not in [e.slug for e in q.glossary]
    assert [e.queued for e in q.glossary] == sorted(e.queued for e in q.glossary)
    assert q.glossary[0].slug == "machine-learning"
    assert q.museum[0].slug == "zillow-offers"


def test_priority_jumps_the_queue(settings):
    path = settings.root / "glossary" / "inference.md"
    path.write_text(path.read_text().replace("---\n", "---\npriority: 1\n", 1))
    assert build_queue(library(settings)).glossary[0].slug == "inference"


def test_forecast_fills_free_slots_in_order_and_counts_the_runway(settings):
    fc = forecast(library(settings), settings, BEFORE_FIRST)
    # 2026-12-02 is claimed by issue 001, so the forecast starts at the next slot
    assert fc.slots[0].at.date() == date(2026, 12, 16)
    assert fc.slots[0].glossary.slug == "machine-learning"
    assert fc.slots[0].museum.slug == "zillow-offers"
    assert fc.runway == min(len(fc.queue.glossary), len(fc.queue.museum)) == 4
    assert not fc.short
    days = [s.at.date() for s in fc.slots]
    assert all((b - a).days == 14 for a, b in zip(days, days[1:], strict=False))


def test_short_runway_warns(settings, brief):
    for name in ("zillow-offers", "air-canada-chatbot"):
        (settings.root / "museum" / f"{name}.md").unlink()
    outcome = brief("queue")
    assert outcome.code == 0
    assert "warning: the queue covers 2 issue(s), fewer than 3" in outcome.err


def test_queue_json_lists_the_forecast(brief):
    data = json.loads(brief("queue", "--json", env={"BRIEF_NOW": "2026-11-25T12:00"}).out)
    assert data["runway"] == 4
    assert data["forecast"][0] == {
        "slot": "2026-12-16T07:00:00-05:00",
        "glossary": "machine-learning",
        "museum": "zillow-offers",
    }


def test_assemble_is_idempotent_for_the_same_slot(settings):
    first = assemble(library(settings), settings, AFTER_FIRST)
    assert first.created
    assert first.issue.path.name == "002-2026-12-16.md"
    written = first.issue.path.read_text()
    again = assemble(library(settings), settings, AFTER_FIRST)
    assert not again.created and again.issue.path == first.issue.path
    assert first.issue.path.read_text() == written
    # the new file validates and carries the queue's heads
    issue = library(settings).issue(2)
    assert issue.status == "draft"
    assert issue.glossary == ("machine-learning",) and issue.museum == ("zillow-offers",)
    assert len(issue.subject) <= 78


def test_assemble_for_a_given_later_slot(settings):
    result = assemble(library(settings), settings, BEFORE_FIRST, date(2026, 12, 30))
    assert result.created and result.issue.date == date(2026, 12, 30)


def test_assemble_refuses_a_date_off_the_cadence(settings):
    with pytest.raises(BriefError, match="2026-12-09 is not a send slot"):
        assemble(library(settings), settings, BEFORE_FIRST, date(2026, 12, 9))


def test_assemble_with_nothing_queued_writes_nothing(settings, brief):
    for path in (settings.root / "museum").glob("*.md"):
        if "knight" not in path.name:
            path.unlink()
    before = sorted(p.name for p in (settings.root / "issues").iterdir())
    outcome = brief("assemble", env={"BRIEF_NOW": "2026-12-03T12:00"})
    assert outcome.code == 1
    assert outcome.err == (
        "error: nothing to assemble for 2026-12-16: no queued museum story "
        "(set 'queued: DATE' in an entry's frontmatter)\n"
    )
    assert sorted(p.name for p in (settings.root / "issues").iterdir()) == before


def test_assemble_command_says_when_nothing_changed(brief):
    env = {"BRIEF_NOW": "2026-12-03T12:00"}
    assert brief("assemble", env=env).out.startswith("wrote issues/002-2026-12-16.md")
    assert brief("assemble", env=env).out == (
        "unchanged: issues/002-2026-12-16.md already claims the slot 2026-12-16\n"
    )


def test_mark_status_rewrites_only_the_status_line(settings):
    issue = library(settings).issue(1)
    before = issue.path.read_text()
    mark_status(issue.path, "sent")
    after = issue.path.read_text()
    assert after == before.replace("status: approved", "status: sent")
    assert library(settings).issue(1).status == "sent"
