"""``brief new``: start a glossary entry, a museum story or a special issue from a file that
already has the right frontmatter and every section heading of its format.

What the editor has to write is marked ``TODO:`` (``library.TODO_MARK``). Such a file is a
draft: the library loads it (so one half-written entry never stops `brief check`, the
preview or the daemon), `brief check` lists it as a warning, and it becomes an error only
once it is queued, carried by an issue or approved.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path

import yaml

from pipeline.config import Settings
from pipeline.content.assemble import create_new
from pipeline.content.library import (
    GLOSSARY_SECTIONS,
    IN_PRACTICE,
    MUSEUM_SECTIONS,
    TODO_MARK,
    VENDOR_SAYS,
    IssueKind,
    Library,
)
from pipeline.errors import BriefError

T = TODO_MARK

_GLOSSARY_BODY = {
    "The Technical Definition": f"{T} what it is, precisely, in two or three paragraphs.",
    "What This Actually Means for Your Business": (
        f"{T} what it changes for an operator: cost, risk, who needs to be involved."
    ),
    "Reality Check": (
        f"**{VENDOR_SAYS}:** {T} the claim, as vendors make it.\n\n"
        f"**{IN_PRACTICE}:** {T} what the claim turns into in production."
    ),
    "What Operators Actually Do": f"{T} what teams who run it well actually do.",
    "The Questions to Ask": (
        f"1. **{T} the first question to ask a vendor?** {T} why it matters.\n"
        f"2. **{T} the second question?** {T} what a good answer sounds like."
    ),
}
_MUSEUM_BODY = {
    "What Happened": f"{T} what happened, to whom, when, with the real names and numbers.",
    "Why It Happened": f"{T} the causes, as the sources establish them.",
    "The Lesson": f"{T} what an operator should take from it.",
}


def slugify(text: str) -> str:
    """Lower-case ASCII words joined by hyphens: ``"Retrieval-Augmented Generation"`` ->
    ``retrieval-augmented-generation``; an accent loses its mark, anything else goes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:80].rstrip("-")


def _front(meta: Mapping[str, object]) -> str:
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)


def _body(sections: dict[str, str]) -> str:
    return "\n".join(f"## {title}\n\n{text}\n" for title, text in sections.items())


def _write_new(path: Path, text: str) -> Path:
    """Create ``path``; never overwrite (the editor's own file wins)."""
    try:
        create_new(path, text)
    except FileExistsError:
        raise BriefError(f"{path} exists already; pick another name or edit it") from None
    return path


def _named(title: str, what: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise BriefError(f'give the {what}, e.g. brief new {what.split()[-1]} "Model Drift"')
    slug = slugify(title)
    if not slug:
        raise BriefError(f"{title!r} gives no file name; use some letters or digits")
    return slug


def new_entry(root: Path, term: str) -> Path:
    """Write ``glossary/<slug>.md`` for ``term`` with the format's fields and sections."""
    slug = _named(term, "glossary term")
    meta = {
        "term": " ".join(term.split()),
        "category": f"{T} e.g. Models & Architecture",
        "vendor_meaning": f"{T} what the vendors say it is, in a few words.",
        "actual_meaning": f"{T} what it actually means, in one sentence.",
    }
    text = (
        f"---\n{_front(meta)}# queued: YYYY-MM-DD   (add once it is ready: the queue takes it)\n"
        f"---\n\n{_body(dict((s, _GLOSSARY_BODY[s]) for s in GLOSSARY_SECTIONS))}"
    )
    return _write_new(root / "glossary" / f"{slug}.md", text)


def new_story(root: Path, title: str, today: date) -> Path:
    """Write ``museum/<slug>.md`` for ``title`` with the format's fields and sections."""
    slug = _named(title, "museum story")
    meta = {
        "title": " ".join(title.split()),
        "organisation": f"{T} who it happened to",
        "date": today,
        "cost": f"{T} the figure with its currency, e.g. $440 million",
        "sources": [f"https://example.com/{T.rstrip(':')}-a-source-readers-can-check"],
    }
    text = (
        f"---\n{_front(meta)}# date: the day it happened ({T} set it; today is a placeholder)\n"
        "# queued: YYYY-MM-DD   (add once it is ready: the queue takes it)\n"
        f"---\n\n{_body(dict((s, _MUSEUM_BODY[s]) for s in MUSEUM_SECTIONS))}"
    )
    return _write_new(root / "museum" / f"{slug}.md", text)


def new_special(library: Library, settings: Settings, subject: str, at: datetime) -> Path:
    """Write the next-numbered special issue for ``at`` (local date and time), a draft."""
    subject = " ".join(subject.split())
    if not subject:
        raise BriefError('give the subject, e.g. brief new special "A correction" --at ...')
    local = at.astimezone(settings.schedule.timezone)
    number = library.next_number()
    meta = {
        "number": number,
        "date": local.date(),
        "kind": IssueKind.SPECIAL.value,
        "time": local.strftime("%H:%M"),
        "subject": subject,
        "preheader": f"{T} one line readers see after the subject",
        "status": "draft",
    }
    text = (
        f"---\n{_front(meta)}# glossary: [slug]   museum: [slug]   (optional in a special issue)\n"
        f"---\n\n{T} what readers need to know.\n"
    )
    path = library.root / "issues" / f"{number:03d}-{local.date().isoformat()}.md"
    return _write_new(path, text)
