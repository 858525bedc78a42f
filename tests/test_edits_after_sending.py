"""Edits after sending: the send records what the issue was made of; `brief check`
warns and the archive page says "updated on …" when a sent issue's content changes;
`X-Brief-Commit` says when the mail was made from uncommitted content."""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures_send import set_keys, subscribe_many


def _library(project: Path):
    from pipeline.config import load_settings
    from pipeline.content.library import load_content

    settings = load_settings(project / "brief.toml", env={})
    return settings, load_content(settings)


def test_the_fingerprint_ignores_the_status_line_send_writes_and_names_changed_files(
    issue_project,
):
    from pipeline.content.assemble import mark_status
    from pipeline.content.fingerprint import changed_files, content_hash

    settings, library = _library(issue_project)
    issue = library.issue(1)
    before = content_hash(issue, library)
    assert [line.split("  ")[1] for line in before.splitlines()] == [
        f"issues/{issue.path.name}",
        "glossary/deep-learning.md",
        "museum/knight-capital.md",
    ]
    mark_status(issue.path, "sent")
    _, library = _library(issue_project)
    assert content_hash(library.issue(1), library) == before
    assert changed_files(before, library.issue(1), library) == ()

    entry = issue_project / "glossary" / "deep-learning.md"
    entry.write_text(entry.read_text(encoding="utf-8") + "\nA late correction.\n", "utf-8")
    _, library = _library(issue_project)
    assert changed_files(before, library.issue(1), library) == ("glossary/deep-learning.md",)


@pytest.fixture
def sent_issue(project: Path, store_url: str, brief):
    """Issue 001 sent through the outbox to three readers on each backend."""
    from pipeline.config import load_settings
    from pipeline.store import open_store

    set_keys(project, "database", url=f'"{store_url}"')
    engine = open_store(load_settings(project / "brief.toml", env={}).database.url)
    subscribe_many(engine, 3)
    out = brief("send", "1", "--yes")
    assert out.code == 0, out.err
    yield engine
    engine.dispose()


def test_the_campaign_records_the_content_and_an_unedited_issue_draws_no_warning(
    project, sent_issue, brief
):
    from pipeline.content.fingerprint import content_hash
    from pipeline.store.ledger import campaigns_of

    settings, library = _library(project)
    issue = library.issue(1)
    assert issue.status == "sent"  # send marked the file: that is not an edit
    [campaign] = campaigns_of(sent_issue, 1)
    assert campaign.content_hash == content_hash(issue, library)
    result = brief("check")
    assert result.code == 0, result.err
    assert "edited after it was sent" not in result.err


def test_an_edited_sent_issue_is_flagged_by_check_and_on_its_archive_page(
    project, sent_issue, brief, tmp_path
):
    story = project / "museum" / "knight-capital.md"
    story.write_text(story.read_text(encoding="utf-8") + "\nA correction.\n", "utf-8")
    week_ago = time.time() - 7 * 86400
    os.utime(story, (week_ago, week_ago))
    _, library = _library(project)
    rel = f"issues/{library.issue(1).path.name}"
    result = brief("check")
    assert result.code == 0, result.err
    assert (
        f"{rel}:1: warning: issue 001 was edited after it was sent "
        "(changed: museum/knight-capital.md)" in result.err
    )
    out = tmp_path / "site"
    assert brief("site", "build", "--out", str(out)).code == 0
    page = (out / "issues" / "001" / "index.html").read_text(encoding="utf-8")
    from datetime import datetime

    from pipeline.render.templating import long_date

    settings, _ = _library(project)
    day = datetime.fromtimestamp(week_ago, settings.schedule.timezone).date()
    assert f'Updated on <time datetime="{day.isoformat()}">{long_date(day)}</time>' in page
    assert "the Failure Museum story “Knight Capital: $460 million in 45 minutes”" in page


def test_the_served_archive_page_says_updated_too(project, sent_issue):
    from starlette.testclient import TestClient

    from pipeline.web.public import create_app

    issue = next((project / "issues").glob("001-*.md"))
    issue.write_text(issue.read_text(encoding="utf-8") + "\nOne more line.\n", "utf-8")
    settings, _ = _library(project)
    client = TestClient(
        create_app(settings, engine=sent_issue), base_url=settings.newsletter.base_url
    )
    page = client.get("/issues/001/")
    assert page.status_code == 200
    assert "Updated on" in page.text and "the introduction changed" in page.text
    assert "Updated on" not in client.get("/issues/").text


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=a@b.c", "-c", "user.name=a", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_x_brief_commit_says_dirty_when_the_content_is_not_committed(project, brief):
    from pipeline.send.message import content_commit

    _git(project, "init", "-q")
    _git(project, "add", "brief.toml", "glossary", "museum", "issues", "templates", "assets")
    _git(project, "commit", "-q", "-m", "content")
    head = _git(project, "rev-parse", "HEAD")
    assert content_commit(project) == head
    (project / "notes.txt").write_text("not content", "utf-8")  # outside the content: clean
    assert content_commit(project) == head

    entry = project / "glossary" / "deep-learning.md"
    entry.write_text(entry.read_text(encoding="utf-8") + "\nUncommitted.\n", "utf-8")
    assert content_commit(project) == f"{head}-dirty"
    result = brief("render", "1", "--out", str(project / "out"))
    assert result.code == 0, result.err
    msg = email.message_from_bytes(
        (project / "out" / "001.eml").read_bytes(), policy=email.policy.default
    )
    assert msg["X-Brief-Commit"] == f"{head}-dirty"

    _git(project, "add", "glossary")
    _git(project, "commit", "-q", "-m", "edit")
    assert content_commit(project) == _git(project, "rev-parse", "HEAD")
    (project / "issues" / "009-2027-04-07.md").write_text("new, untracked", "utf-8")
    assert content_commit(project).endswith("-dirty")


def test_check_and_site_build_stand_without_the_database(published, brief, tmp_path):
    from tests.servers import free_port

    set_keys(published, "database", url=f'"postgresql+psycopg://brief@127.0.0.1:{free_port()}/x"')
    result = brief("check")
    assert result.code == 0, result.err
    assert "warning: sent issues not compared with what was sent: cannot open" in result.err
    built = brief("site", "build", "--out", str(tmp_path / "site"))
    assert built.code == 0, built.err
    assert "warning: edits after sending not marked" in built.err
    assert (tmp_path / "site" / "issues" / "001" / "index.html").exists()


def test_the_rebuild_after_a_send_marks_edited_issues_like_site_build(project, sent_issue):
    from dataclasses import replace
    from functools import partial

    from pipeline.config import SiteSettings
    from pipeline.content.library import load_content
    from pipeline.render.site import rebuild_after_send
    from pipeline.send.edits import edits_after_sending

    entry = project / "glossary" / "deep-learning.md"
    entry.write_text(entry.read_text(encoding="utf-8") + "\nA correction.\n", "utf-8")
    settings, _ = _library(project)
    on = replace(settings, site=SiteSettings(out=project / "public", rebuild_after_send=True))
    edits = partial(edits_after_sending, sent_issue, settings=on)
    assert rebuild_after_send(partial(load_content, on), on, edits)
    page = (project / "public" / "issues" / "001" / "index.html").read_text(encoding="utf-8")
    assert "the glossary entry “Deep Learning” changed" in page
