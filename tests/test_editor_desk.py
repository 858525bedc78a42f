"""The editor's desk: `brief new` scaffolds, `brief approve`, and the drafts they leave."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.content.assemble import mark_status
from pipeline.content.library import load_content


def brief(settings, *args: str) -> int:
    return main(["--config", str(settings.path), *args])


def test_new_entry_writes_every_field_and_section_and_check_calls_it_a_draft(settings, capsys):
    assert brief(settings, "new", "entry", "Vector Database") == 0
    path = settings.root / "glossary" / "vector-database.md"
    text = path.read_text()
    for heading in (
        "## The Technical Definition",
        "## What This Actually Means for Your Business",
        "## Reality Check",
        "## What Operators Actually Do",
        "## The Questions to Ask",
    ):
        assert heading in text
    assert "term: Vector Database" in text and "**What the vendor says:**" in text
    out = capsys.readouterr()
    assert "wrote glossary/vector-database.md" in out.out
    # The library loads it (a draft never stops check, preview or the daemon)...
    entry = load_content(settings).glossary["vector-database"]
    assert entry.queued is None and entry.todo_line is not None
    # ...and `brief check` passes, listing it as a warning at its first TODO line.
    assert brief(settings, "check") == 0
    err = capsys.readouterr().err
    assert f"glossary/vector-database.md:{entry.todo_line}: warning: still holds 'TODO:'" in err


def test_new_story_writes_every_section_and_refuses_to_overwrite(settings, capsys):
    assert brief(settings, "new", "story", "Zillow’s second try") == 0
    path = settings.root / "museum" / "zillows-second-try.md"
    text = path.read_text()
    for heading in ("## What Happened", "## Why It Happened", "## The Lesson"):
        assert heading in text
    story = load_content(settings).museum["zillows-second-try"]
    assert story.title == "Zillow’s second try" and story.todo_line is not None
    capsys.readouterr()
    assert brief(settings, "new", "story", "Zillow’s second try") == 1
    err = capsys.readouterr().err
    assert "exists already" in err and len(err.strip().splitlines()) == 1
    assert path.read_text() == text


def test_a_queued_scaffold_is_an_error_at_its_todo_line(settings, capsys):
    brief(settings, "new", "entry", "Vector Database")
    path = settings.root / "glossary" / "vector-database.md"
    path.write_text(path.read_text().replace("# queued: YYYY-MM-DD", "queued: 2026-11-20\n#"))
    capsys.readouterr()
    assert brief(settings, "check") == 1
    err = capsys.readouterr().err
    assert "glossary/vector-database.md:3: still holds 'TODO:' from `brief new`" in err


def test_new_with_a_name_that_makes_no_file_name_is_one_line(settings, capsys):
    assert brief(settings, "new", "entry", "!!!") == 1
    err = capsys.readouterr().err
    assert "gives no file name" in err and len(err.strip().splitlines()) == 1


def _draft_issue_one(settings) -> Path:
    path = settings.root / "issues" / "001-2026-12-02.md"
    mark_status(path, "draft")
    return path


def test_approve_marks_a_clean_issue_approved_and_keeps_the_rest_of_the_file(settings, capsys):
    path = _draft_issue_one(settings)
    before = path.read_text()
    assert brief(settings, "approve", "1") == 0
    after = path.read_text()
    assert after == before.replace("status: draft", "status: approved")
    assert "approved: issues/001-2026-12-02.md" in capsys.readouterr().out
    assert brief(settings, "approve", "1") == 0
    assert "unchanged" in capsys.readouterr().out


def test_approve_refuses_an_issue_the_linter_stops_and_changes_nothing(settings, capsys):
    path = _draft_issue_one(settings)
    text = path.read_text()
    path.write_text(text.replace("Welcome to the first Brief.", "Welcome TK to the first Brief."))
    before = path.read_text()
    assert brief(settings, "approve", "1") == 1
    err = capsys.readouterr().err
    assert "issues/001-2026-12-02.md:" in err and "TK" in err
    assert path.read_text() == before


def test_approve_refuses_an_issue_whose_own_file_is_broken_naming_its_line(settings, capsys):
    path = _draft_issue_one(settings)
    path.write_text(path.read_text().replace("- knight-capital", "- no-such-story"))
    before = path.read_text()
    assert brief(settings, "approve", "001") == 1
    err = capsys.readouterr().err
    assert "issues/001-2026-12-02.md:9: unknown museum slug 'no-such-story'" in err
    assert path.read_text() == before


def test_approve_is_not_stopped_by_a_broken_file_the_issue_does_not_carry(settings, capsys):
    _draft_issue_one(settings)
    (settings.root / "glossary" / "broken.md").write_text("no frontmatter\n")
    assert brief(settings, "approve", "1") == 0
    assert "status: approved" in (settings.root / "issues" / "001-2026-12-02.md").read_text()


def test_approve_refuses_a_sent_issue(settings, capsys):
    mark_status(settings.root / "issues" / "001-2026-12-02.md", "sent")
    assert brief(settings, "approve", "1") == 1
    assert "sent already" in capsys.readouterr().err


def test_send_of_an_unapproved_issue_points_to_brief_approve(settings, capsys):
    _draft_issue_one(settings)
    assert brief(settings, "lists", "create", "main") == 0
    assert brief(settings, "send", "1", "--yes") != 0
    assert "run brief approve 001" in capsys.readouterr().err


@pytest.mark.parametrize("at", ["2026-12-09 10:30", "2026-12-09T10:30"])
def test_new_special_writes_the_next_number_for_its_time_as_a_draft(
    settings, capsys, monkeypatch, at
):
    monkeypatch.setenv("BRIEF_NOW", "2026-12-03T09:00")
    assert brief(settings, "new", "special", "A correction", "--at", at) == 0
    issue = load_content(settings).issue(2)
    assert issue.special and issue.status == "draft" and issue.subject == "A correction"
    assert str(issue.date) == "2026-12-09" and f"{issue.send_time:%H:%M}" == "10:30"
    assert issue.path.name == "002-2026-12-09.md"
    # Still holding TODO: approve refuses it.
    capsys.readouterr()
    assert brief(settings, "approve", "2") == 1
    assert "TODO" in capsys.readouterr().err
