"""`brief demo`: the README's main job, on embedded defaults, in a scratch copy."""

from __future__ import annotations

import email

from tests.conftest import Outcome


def test_demo_assembles_renders_and_sends_through_the_outbox(project, brief):
    issue_file = next((project / "issues").glob("001-*.md"))
    before = issue_file.read_text(encoding="utf-8")
    database = project / ".brief" / "brief.db"
    database_before = database.read_bytes()
    outcome: Outcome = brief("demo", "--readers", "7", env={"BRIEF_NOW": "2026-11-25T12:00"})
    assert outcome.code == 0, outcome.err
    demo = project / ".brief" / "demo"
    # Issue 001 ships in issues/ and claims 2026-12-02: the demo assembles its own.
    assert "assembled: issue 002 for 2026-12-16 (002-2026-12-16.md)" in outcome.out
    assert "already assembled" not in outcome.out
    outbox = demo / ".brief" / "outbox" / "002"
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 7
    to = sorted(email.message_from_bytes(p.read_bytes())["To"] for p in files)
    assert to[0] == "Reader 1 <reader001@example.com>"
    for name in ("002.html", "002.txt", "002.eml"):
        assert (demo / ".brief" / "render" / name).stat().st_size > 1000
    assert f"sent issue 002 to 7 of 7 readers through the outbox: {outbox}/" in outcome.out
    # the copy's new issue is sent; the operator's own issue file is untouched
    assert "status: sent" in (demo / "issues" / "002-2026-12-16.md").read_text(encoding="utf-8")
    assert issue_file.read_text(encoding="utf-8") == before
    # The operator's database (the fixture's migrated, empty one) is untouched, WAL included.
    assert database.read_bytes() == database_before
    assert not database.with_name("brief.db-wal").exists()
    # the sent issue is in the demo's web archive, with its glossary entry
    assert (demo / "site" / "issues" / "002" / "index.html").is_file()
    carried = (demo / "issues" / "002-2026-12-16.md").read_text(encoding="utf-8")
    slug = carried.split("glossary:\n- ")[1].split("\n")[0]
    assert (demo / "site" / "glossary" / slug / "index.html").is_file()
    assert not (project / "site").exists()


def test_demo_after_the_first_slot_assembles_the_next_issue(project, brief):
    outcome = brief("demo", "--readers", "2", env={"BRIEF_NOW": "2026-12-03T12:00"})
    assert outcome.code == 0, outcome.err
    assert "assembled: issue 002 for 2026-12-16 (002-2026-12-16.md)" in outcome.out
    assert not (project / "issues" / "002-2026-12-16.md").exists()


def test_demo_with_the_operators_own_issues_assembles_after_them(project, brief):
    """An operator with issues of their own (002 a draft): the demo assembles and sends a
    new one after them, not the operator's draft."""
    first = brief("demo", "--readers", "1", env={"BRIEF_NOW": "2026-11-25T12:00"})
    assert first.code == 0, first.err
    made = project / ".brief" / "demo" / "issues" / "002-2026-12-16.md"
    (project / "issues" / made.name).write_text(
        made.read_text(encoding="utf-8").replace("status: sent", "status: draft"),
        encoding="utf-8",
    )
    outcome = brief("demo", "--readers", "2", env={"BRIEF_NOW": "2026-11-25T12:00"})
    assert outcome.code == 0, outcome.err
    assert "assembled: issue 003 for 2026-12-30 (003-2026-12-30.md)" in outcome.out
    assert "sent issue 003 to 2 of 2 readers" in outcome.out


def test_demo_help_says_it_builds_the_site(brief):
    out = brief("demo", "--help").out
    assert "site" in out and "assembles a new issue" in out


def test_running_the_demo_twice_starts_afresh(project, brief):
    env = {"BRIEF_NOW": "2026-11-25T12:00"}
    assert brief("demo", "--readers", "3", env=env).code == 0
    again = brief("demo", "--readers", "3", env=env)
    assert again.code == 0, again.err
    assert "sent issue 002 to 3 of 3 readers" in again.out
