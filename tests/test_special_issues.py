"""Special issues (``kind: special``): a correction, an announcement or a special edition,
sent at the date and time the editor gives, off the cadence, with or without entries."""

from __future__ import annotations

from datetime import date, time, timedelta
from pathlib import Path

import pytest

from pipeline.content.library import IssueKind, load_content
from pipeline.daemon.decide import ActionKind, LedgerState, due_actions
from pipeline.daemon.service import Daemon
from pipeline.errors import ContentError
from tests.fixtures_scheduler import local, outbox_files, set_status

# brief.toml: anchor 2026-12-02 (issue 001), 07:00 America/New_York, 6 hours' grace.
AT = local("2026-12-09T10:30")  # a Wednesday that is not a slot, at its own time
FIRST_SENT = LedgerState(sent=frozenset({1}))


def write_special(
    root: Path,
    *,
    number: int = 2,
    day: str = "2026-12-09",
    status: str = "approved",
    extra: str = 'time: "10:30"\n',
    body: str = "A correction to issue 001: the loss was $460 million, not $440 million.",
) -> Path:
    path = root / "issues" / f"{number:03d}-{day}.md"
    path.write_text(
        f"---\nnumber: {number}\ndate: {day}\nkind: special\n{extra}"
        f"subject: 'A correction'\nstatus: {status}\n---\n\n{body}\n",
        encoding="utf-8",
    )
    return path


def test_a_special_issue_needs_no_slot_date_and_no_entries(settings):
    write_special(settings.root)
    issue = load_content(settings).issue(2)
    assert issue.kind is IssueKind.SPECIAL and issue.special
    assert issue.send_time == time(10, 30)
    assert issue.glossary == () and issue.museum == ()


def test_a_regular_issue_off_the_cadence_is_still_refused(settings):
    path = write_special(settings.root)
    path.write_text(path.read_text().replace("kind: special\n", "").replace('time: "10:30"\n', ""))
    with pytest.raises(ContentError) as err:
        load_content(settings)
    text = str(err.value)
    assert "issues/002-2026-12-09.md:3" in text and "not a send slot" in text
    assert "missing field 'glossary'" in text


@pytest.mark.parametrize(
    "extra, line, says",
    [
        ("time: 25:00\n", 5, "must be a time of day"),
        ('time: "noon"\n', 5, "must be a time of day"),
        ("", 0, ""),  # no time: the cadence's send_time
    ],
)
def test_a_special_issues_time_is_checked_at_its_line(settings, extra, line, says):
    write_special(settings.root, extra=extra)
    if not says:
        assert load_content(settings).issue(2).send_time is None
        return
    with pytest.raises(ContentError) as err:
        load_content(settings)
    assert f"issues/002-2026-12-09.md:{line}: field 'time'" in str(err.value)
    assert says in str(err.value)


def test_an_unquoted_time_reads_as_the_clock_time_not_yaml_minutes(settings):
    # YAML 1.1 reads 10:30 as the number 630 (sexagesimal); the editor meant 10:30.
    write_special(settings.root, extra="time: 10:30\n")
    assert load_content(settings).issue(2).send_time == time(10, 30)


def test_time_on_a_regular_issue_is_an_error_naming_the_line(settings):
    path = settings.root / "issues" / "001-2026-12-02.md"
    text = path.read_text()
    path.write_text(text.replace("status: approved", 'status: approved\ntime: "09:00"'))
    with pytest.raises(ContentError) as err:
        load_content(settings)
    assert "issues/001-2026-12-02.md:11: field 'time' is only for special issues" in str(err.value)


def test_an_unknown_kind_is_an_error_naming_the_line(settings):
    write_special(settings.root).write_text(
        write_special(settings.root).read_text().replace("kind: special", "kind: extra")
    )
    with pytest.raises(ContentError) as err:
        load_content(settings)
    assert "issues/002-2026-12-09.md:4: kind 'extra' must be one of: regular, special" in str(
        err.value
    )


def test_the_daemon_decides_to_send_an_approved_special_issue_at_its_time(settings):
    write_special(settings.root)
    library = load_content(settings)
    assert due_actions(settings, library, FIRST_SENT, AT - timedelta(minutes=1)) == []
    actions = due_actions(settings, library, FIRST_SENT, AT)
    assert [(a.kind, a.slot, a.issue.number) for a in actions] == [(ActionKind.SEND, AT, 2)]
    assert not actions[0].force
    # Late (the daemon was down) but within the grace period: still sent.
    assert due_actions(settings, library, FIRST_SENT, AT + timedelta(hours=5))
    # After the grace period it is not sent by the daemon (a human sends it or moves it).
    assert due_actions(settings, library, FIRST_SENT, AT + timedelta(hours=7)) == []
    # Sent: nothing more.
    done = LedgerState(sent=frozenset({1, 2}))
    assert due_actions(settings, library, done, AT) == []


def test_an_unapproved_special_issue_waits_and_is_not_forced_out(settings):
    write_special(settings.root, status="draft")
    library = load_content(settings)
    assert due_actions(settings, library, FIRST_SENT, AT) == []
    from tests.fixtures_scheduler import with_schedule

    loose = with_schedule(settings, unapproved="send")
    assert due_actions(loose, library, FIRST_SENT, AT) == []


def test_without_a_time_a_special_issue_goes_at_the_cadences_send_time(settings):
    write_special(settings.root, extra="")
    actions = due_actions(settings, load_content(settings), FIRST_SENT, local("2026-12-09T07:00"))
    assert [a.slot for a in actions] == [local("2026-12-09T07:00")]


def test_the_daemon_sends_a_special_issue_once_at_its_time_with_a_controlled_clock(
    settings, sched_store, sched_lib, audience3
):
    set_status(sched_lib().issue(1).path, "sent")
    write_special(settings.root)

    def run_at(now):
        return Daemon(settings, sched_store, sched_lib, clock=lambda: now, poll=0.05).run_once()

    assert run_at(AT - timedelta(minutes=5)) == []
    outcomes = run_at(AT)
    assert [(o.event, o.action.issue.number) for o in outcomes] == [("sent", 2)]
    assert outcomes[0].counts["sent"] == 3
    assert sched_lib().issue(2).status == "sent"
    assert len(outbox_files(settings)) == 3
    assert run_at(AT + timedelta(minutes=30)) == []  # once
    assert len(outbox_files(settings)) == 3


def test_regular_numbering_continues_after_a_special_issue(settings, sched_lib):
    from pipeline.content.assemble import assemble

    write_special(settings.root, day="2026-12-20")  # dated after the next slot
    made = assemble(sched_lib(), settings, local("2026-12-10T00:00"), date(2026, 12, 16))
    assert made.created and made.issue.number == 3 and made.issue.date == date(2026, 12, 16)
    assert [i.number for i in sched_lib().issues] == [1, 2, 3]


def test_a_special_issue_on_a_slot_day_does_not_claim_the_slot(settings, sched_lib):
    from pipeline.content.assemble import assemble

    write_special(settings.root, day="2026-12-16")
    made = assemble(sched_lib(), settings, local("2026-12-10T00:00"), date(2026, 12, 16))
    assert made.created and made.issue.number == 3 and not made.issue.special


def test_the_archive_lists_a_sent_special_issue_marked_special(settings, sched_lib):
    from pipeline.render.site import build_site

    write_special(settings.root, status="sent")
    out = settings.root / "public"
    build_site(sched_lib(), settings, out)
    index = (out / "issues" / "index.html").read_text()
    assert "/issues/002/" in index and "Special issue" in index
    page = (out / "issues" / "002" / "index.html").read_text()
    assert "A correction to issue 001" in page
