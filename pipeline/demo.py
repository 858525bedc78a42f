"""The whole main job on embedded defaults, in a scratch copy of the newsletter.

The demo copies settings, content and templates into ``.brief/demo/`` and runs
there what the daemon runs every other Wednesday: assemble a new issue from the
queue (for the first slot no issue of the copy claims yet, so the demo always shows
assembly, whatever issues the newsletter already has), render it, send it through
``outbox`` to a list of example.com readers, and build the web archive that now
publishes it.
Working on a copy keeps the operator's issues/ and database untouched: a real
send marks the issue file sent, and demo readers must never join a real list.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from pipeline.config import Settings, load_settings
from pipeline.content import calendar
from pipeline.content.assemble import assemble, mark_sent, mark_status
from pipeline.content.library import Issue, load_content
from pipeline.errors import BriefError
from pipeline.private import private_dirs
from pipeline.providers import provider_setup
from pipeline.render.site import build_site
from pipeline.send import send_campaign
from pipeline.send.proof import write_rendered
from pipeline.store import add_subscriber, audience_count, create_list, open_store

COPIED = ("glossary", "museum", "issues", "templates")


@dataclass(frozen=True)
class DemoResult:
    root: Path
    issue: Issue
    files: tuple[Path, ...]
    outbox: Path
    sent: int
    total: int
    site: Path


def prepare(settings: Settings, env: dict[str, str]) -> Settings:
    """A fresh copy of the newsletter under .brief/demo, on SQLite and the outbox."""
    root = settings.state_dir / "demo"
    if root.exists():
        shutil.rmtree(root)
    private_dirs(root)  # .brief/ holds personal data; the demo may be first to make it
    for name in COPIED:
        if (settings.root / name).is_dir():
            shutil.copytree(settings.root / name, root / name)
    shutil.copy(settings.path, root / "brief.toml")
    demo = load_settings(root / "brief.toml", env=env)
    return replace(
        demo,
        database=replace(demo.database, url=f"sqlite:///{root / '.brief' / 'demo.db'}"),
        provider=replace(demo.provider, name="outbox"),
    )


def _free_slot(library, settings: Settings, now: datetime):
    """The first slot after ``now`` and after every regular issue's date: no issue of the
    copy claims it, and issues stay numbered in date order."""
    after = now
    dated = [i.date for i in library.issues if not i.special]
    if dated:
        after = max(after, calendar.slot_at(settings.schedule, max(dated)))
    return calendar.next_slot(settings.schedule, after).date()


def run_demo(
    settings: Settings,
    now: datetime,
    env: dict[str, str],
    readers: int = 25,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Assemble, render and send the next issue to ``readers`` example.com addresses."""
    demo = prepare(settings, env)
    say(f"demo copy of the newsletter: {demo.root}")
    library = load_content(demo)
    issue: Issue | None
    try:
        made = assemble(library, demo, now, _free_slot(library, demo, now))
        say(f"assembled: issue {made.issue.label} for {made.issue.date} ({made.issue.path.name})")
        issue = made.issue
    except BriefError as exc:  # an empty queue still leaves an issue to send
        say(f"assemble: {exc}")
        issue = load_content(demo).next_unsent()
    library = load_content(demo)
    if issue is None:
        raise BriefError("no unsent issue in the demo copy")
    issue = library.issue(issue.number)
    if issue.status == "draft":
        # The editor approves a draft; in the scratch copy the demo plays editor.
        mark_status(issue.path, "approved")
        library = load_content(demo)
        issue = library.issue(issue.number)
        say(f"approved issue {issue.label} in the demo copy (an editor does this for real)")

    files = write_rendered(issue, library, demo, demo.state_dir / "render")
    for path in files:
        say(f"rendered {path}")

    engine = open_store(demo.database.url)
    list_name = demo.newsletter.default_list
    create_list(engine, list_name, "demo readers (example.com)")
    for n in range(1, readers + 1):
        add_subscriber(
            engine,
            f"reader{n:03d}@example.com",
            name=f"Reader {n}",
            list_name=list_name,
            confirmed=True,
            source="demo",
        )
    say(f"list {list_name!r}: {audience_count(engine, list_name)} confirmed demo readers")

    report = send_campaign(engine, demo, library, issue, list_name)
    if report.state == "sent":
        mark_sent(issue)
    outbox = Path(provider_setup(demo).table["dir"])  # the outbox's table, defaults filled
    outbox = (outbox if outbox.is_absolute() else demo.root / outbox) / issue.label
    say(
        f"sent issue {issue.label} to {report.sent} of {report.total} readers through the "
        f"outbox: {outbox}/"
    )

    # The sent issue is now published: the web archive has something to show.
    site = demo.root / "site"
    pages = build_site(load_content(demo), demo, site)
    say(f"built the web archive ({len(pages)} files): {site}/index.html")
    return DemoResult(demo.root, issue, tuple(files), outbox, report.sent, report.total, site)
