"""A broken file must not stop the Wednesday: the daemon works from the files without
problems and logs each problem at its path:line; only the slot whose own issue (or what
it carries) is broken waits, neither skipped nor assembled twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from pipeline.daemon.service import Daemon, DaemonLibrary
from tests.fixtures_scheduler import local, outbox_files

SLOT1 = local("2026-12-02T07:00")


def _run(settings, engine, now):
    return Daemon(
        settings, engine, DaemonLibrary(settings), clock=lambda: now, poll=0.05
    ).run_once()


def test_a_broken_draft_entry_does_not_stop_the_send_at_the_slot(
    settings, sched_store, audience3, caplog
):
    caplog.set_level(logging.INFO, logger="brief")
    (settings.root / "glossary" / "half-written.md").write_text("---\nterm: [oops\n---\n")
    outcomes = _run(settings, sched_store, SLOT1)
    assert [o.event for o in outcomes] == ["sent"]
    assert len(outbox_files(settings)) == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("glossary/half-written.md:3" in e for e in errors)


def test_the_slots_own_broken_issue_waits_it_is_neither_skipped_nor_assembled_again(
    settings, sched_store, sched_lib, audience3
):
    path = settings.root / "issues" / "001-2026-12-02.md"
    path.write_text(path.read_text().replace("- knight-capital", "- no-such-story"))
    assert _run(settings, sched_store, SLOT1) == []  # no skip: the editor can still fix it
    assert outbox_files(settings) == []
    # Ahead of the slot too: no second issue file for the same date.
    ahead = local("2026-11-29T07:00")
    assert [o.event for o in _run(settings, sched_store, ahead)] == []
    assert sorted(p.name for p in (settings.root / "issues").glob("*.md")) == [path.name]
    # Fixed within the grace period: sent.
    path.write_text(path.read_text().replace("- no-such-story", "- knight-capital"))
    outcomes = _run(settings, sched_store, SLOT1 + timedelta(hours=1))
    assert [o.event for o in outcomes] == ["sent"]


def test_a_broken_issue_past_the_grace_period_is_written_off_as_missed(
    settings, sched_store, audience3
):
    path = settings.root / "issues" / "001-2026-12-02.md"
    path.write_text(path.read_text().replace("status: approved", "status: approved\nbogus: 1"))
    outcomes = _run(settings, sched_store, SLOT1 + timedelta(hours=7))
    assert [o.event for o in outcomes] == ["missed"]


def test_run_once_still_exits_non_zero_naming_the_problem_after_doing_its_work(project, brief):
    (project / "glossary" / "half-written.md").write_text("---\nterm: [oops\n---\n")
    assert brief("lists", "create", "main").code == 0
    assert brief("subscribers", "add", "a@example.org", "--confirmed").code == 0
    ran = brief("run", "--once", env={"BRIEF_NOW": "2026-12-02T07:00:30-05:00"})
    assert ran.code == 1
    assert "glossary/half-written.md:3" in ran.err
    assert "status: sent" in (project / "issues" / "001-2026-12-02.md").read_text()
