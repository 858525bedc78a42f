"""The queue: what goes into the next issue, the runway forecast, writing issue files.

An item's state is derived, never stored twice: *draft* without ``queued``,
*taken* once any issue file carries it, *published* once that issue is sent,
*waiting* otherwise. Waiting items go out by priority (1 first; none last),
then queued date, then slug.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import yaml

from pipeline.config import Settings
from pipeline.content import calendar
from pipeline.content.library import STATUSES, GlossaryEntry, Issue, Library, MuseumStory
from pipeline.errors import BriefError, ContentError, Problem

RUNWAY_WARNING = 3
SUBJECT_MAX = 78


@dataclass(frozen=True)
class Queue:
    """Waiting glossary entries and museum stories, in the order they go out."""

    glossary: tuple[GlossaryEntry, ...]
    museum: tuple[MuseumStory, ...]

    @property
    def runway(self) -> int:
        """How many issues the queue fills: each takes one entry and one story."""
        return min(len(self.glossary), len(self.museum))


@dataclass(frozen=True)
class ForecastSlot:
    at: datetime
    glossary: GlossaryEntry | None
    museum: MuseumStory | None


@dataclass(frozen=True)
class Forecast:
    queue: Queue
    slots: tuple[ForecastSlot, ...]

    @property
    def runway(self) -> int:
        return self.queue.runway

    @property
    def short(self) -> bool:
        return self.runway < RUNWAY_WARNING


@dataclass(frozen=True)
class Assembled:
    """What ``assemble`` did: the issue for the slot and whether it is new."""

    issue: Issue
    created: bool


def _order(item: GlossaryEntry | MuseumStory) -> tuple:
    return (item.priority if item.priority is not None else float("inf"), item.queued, item.slug)


def build_queue(library: Library) -> Queue:
    """The waiting items: queued, and carried by no issue file."""
    taken = library.taken()
    glossary = sorted(
        (e for e in library.glossary.values() if e.queued and f"glossary:{e.slug}" not in taken),
        key=_order,
    )
    museum = sorted(
        (s for s in library.museum.values() if s.queued and f"museum:{s.slug}" not in taken),
        key=_order,
    )
    return Queue(tuple(glossary), tuple(museum))


def free_slots(library: Library, settings: Settings, now: datetime):
    """Upcoming slots that no issue file claims yet, earliest first."""
    claimed = {i.date for i in library.issues}
    for at in calendar.slots(settings.schedule, now):
        if at.date() not in claimed:
            yield at


def forecast(library: Library, settings: Settings, now: datetime, horizon: int = 0) -> Forecast:
    """Which upcoming free slot each waiting item would fill."""
    queue = build_queue(library)
    count = max(horizon, len(queue.glossary), len(queue.museum), 1)
    out = []
    for i, at in zip(range(count), free_slots(library, settings, now), strict=False):
        out.append(
            ForecastSlot(
                at,
                queue.glossary[i] if i < len(queue.glossary) else None,
                queue.museum[i] if i < len(queue.museum) else None,
            )
        )
    return Forecast(queue, tuple(out))


def propose_subject(entry: GlossaryEntry, story: MuseumStory) -> str:
    """A subject the editor can keep: the term and the museum story, under 78 chars."""
    for subject in (
        f"{entry.term} · {story.title}",
        f"{entry.term} · the Failure Museum: {story.organisation}",
        f"{entry.term} · {story.organisation}",
    ):
        if len(subject) <= SUBJECT_MAX:
            return subject
    return entry.term[:SUBJECT_MAX]


def propose_preheader(entry: GlossaryEntry, story: MuseumStory) -> str:
    """The inbox line under the subject: what the term actually means."""
    text = f"{entry.term}: {entry.actual_meaning[:1].upper()}{entry.actual_meaning[1:]}"
    if len(text) > 140:
        text = text[:137].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text


def propose_intro(entry: GlossaryEntry, story: MuseumStory) -> str:
    """The intro the editor starts from: the term and the museum story by its title (the
    organisation alone says who failed, not what the reader is about to read)."""
    return (
        f"This issue: **{_literal(entry.term)}** in the AI Glossary, and, in the Failure "
        f"Museum, *{_literal(story.title)}*."
    )


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>])")


def _literal(text: str) -> str:
    """``text`` as Markdown that shows it as written (a title's ``*`` is not emphasis)."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


def assemble(
    library: Library, settings: Settings, now: datetime, for_date: date | None = None
) -> Assembled:
    """Write the issue file for the next slot (or ``for_date``) from the queue.

    Idempotent: when an issue already claims the slot, nothing is written.
    """
    schedule = settings.schedule
    if for_date is None:
        at = calendar.next_slot(schedule, now)
    else:
        if not calendar.is_slot_date(schedule, for_date):
            raise BriefError(
                f"{for_date} is not a send slot; next ones: "
                + ", ".join(
                    s.date().isoformat()
                    for s in calendar.slots(schedule, calendar.slot_at(schedule, for_date), 2)
                )
            )
        at = calendar.slot_at(schedule, for_date)
        if at <= now:
            raise BriefError(f"the slot {at.isoformat()} has passed; pick an upcoming one")
    regular = [i for i in library.issues if not i.special]  # specials claim no slot
    for issue in regular:
        if issue.date == at.date():
            return Assembled(issue, created=False)
    queue = build_queue(library)
    if not queue.glossary or not queue.museum:
        missing = " and ".join(
            k
            for k, q in (("glossary entry", queue.glossary), ("museum story", queue.museum))
            if not q
        )
        raise BriefError(
            f"nothing to assemble for {at.date()}: no queued {missing} "
            "(set 'queued: DATE' in an entry's frontmatter)"
        )
    later = [i for i in regular if i.date > at.date()]
    if later:
        raise BriefError(
            f"issue {later[0].number} is already dated {later[0].date}, after "
            f"{at.date()}; issues are numbered in date order"
        )
    entry, story = queue.glossary[0], queue.museum[0]
    number = library.next_number()
    issue = Issue(
        number=number,
        date=at.date(),
        subject=propose_subject(entry, story),
        preheader=propose_preheader(entry, story),
        glossary=(entry.slug,),
        museum=(story.slug,),
        status="draft",
        intro=propose_intro(entry, story),
        path=library.root / "issues" / f"{number:03d}-{at.date().isoformat()}.md",
    )
    write_issue(issue)
    return Assembled(issue, created=True)


def issue_text(issue: Issue) -> str:
    """The Markdown file for an issue: frontmatter in a fixed order, then the intro."""
    meta = {
        "number": issue.number,
        "date": issue.date,
        "subject": issue.subject,
        "preheader": issue.preheader,
        "glossary": list(issue.glossary),
        "museum": list(issue.museum),
        "status": issue.status,
    }
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)
    return f"---\n{front}---\n\n{issue.intro.strip()}\n"


def write_issue(issue: Issue) -> None:
    """Create the issue file; never overwrite one (two writers cannot both win)."""
    create_new(issue.path, issue_text(issue))


def create_new(path: Path, text: str) -> None:
    """Create a content file that must not exist yet; FileExistsError when it does (an
    editor's own file, or another writer's, always wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


_STATUS_LINE = re.compile(r"^status:[^\n]*$", re.M)


def mark_sent(issue: Issue) -> None:
    """Mark an issue file ``sent`` once its campaign is: the one step after a send that
    finished, whoever sent it (the CLI, the daemon, a joined daemon, the demo). Nothing to
    do when the file says so already or is gone."""
    if issue.status != "sent" and issue.path.exists():
        mark_status(issue.path, "sent")


def mark_status(path: Path, status: str) -> None:
    """Rewrite the ``status:`` line of an issue file in place, keeping the rest as written."""
    if status not in STATUSES:
        raise ValueError(status)
    text = path.read_text(encoding="utf-8")
    end = text.find("\n---", 3)
    head, tail = text[:end], text[end:]
    if not _STATUS_LINE.search(head):
        raise ContentError([Problem(str(path), 1, "no 'status:' line in the frontmatter")])
    new = _STATUS_LINE.sub(f"status: {status}", head, count=1) + tail
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".status-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new)
    os.replace(tmp, path)
