"""Parse and validate the editor's content: glossary entries, museum stories, issues.

Every problem is a ``Problem(path, line, message)``; ``load_library`` collects
all of them in one run and raises a single ``ContentError`` carrying the lot,
so the editor fixes everything at once instead of one error per run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import frontmatter
import yaml
from markdown_it import MarkdownIt

from pipeline.config import Settings
from pipeline.content.calendar import is_slot_date
from pipeline.errors import ContentError, NotFound, Problem

GLOSSARY_SECTIONS = (
    "The Technical Definition",
    "What This Actually Means for Your Business",
    "Reality Check",
    "What Operators Actually Do",
    "The Questions to Ask",
)
MUSEUM_SECTIONS = ("What Happened", "Why It Happened", "The Lesson")
STATUSES = ("draft", "approved", "sent")
VENDOR_SAYS = "What the vendor says"
IN_PRACTICE = "What that means in practice"

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ISSUE_NAME = re.compile(r"^(\d{3,})-(\d{4}-\d{2}-\d{2})\.md$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.I)


@dataclass(frozen=True)
class Section:
    """One ``##`` section of a body: its title, Markdown source and first line."""

    title: str
    markdown: str
    line: int


@dataclass(frozen=True)
class Question:
    """One item of "The Questions to Ask": the bold question and its answer."""

    question: str
    answer: str


@dataclass(frozen=True)
class GlossaryEntry:
    slug: str
    term: str
    category: str
    vendor_meaning: str
    actual_meaning: str
    queued: date | None
    priority: int | None
    sections: tuple[Section, ...]
    vendor_says: str
    in_practice: str
    questions: tuple[Question, ...]
    path: Path
    todo_line: int | None = None  # first line still holding "TODO:" (a `brief new` scaffold)

    kind = "glossary"

    @property
    def title(self) -> str:
        return self.term

    def section(self, title: str) -> Section:
        return next(s for s in self.sections if s.title == title)


@dataclass(frozen=True)
class MuseumStory:
    slug: str
    title: str
    organisation: str
    date: date
    cost: str
    sources: tuple[str, ...]
    queued: date | None
    priority: int | None
    sections: tuple[Section, ...]
    path: Path
    todo_line: int | None = None  # first line still holding "TODO:" (a `brief new` scaffold)

    kind = "museum"

    def section(self, title: str) -> Section:
        return next(s for s in self.sections if s.title == title)


class IssueKind(StrEnum):
    """A regular issue goes out at its cadence slot; a special one (a correction, an
    announcement, a special edition) at the date and time its file gives."""

    REGULAR = "regular"
    SPECIAL = "special"


@dataclass(frozen=True)
class Issue:
    number: int
    date: date
    subject: str
    preheader: str
    glossary: tuple[str, ...]
    museum: tuple[str, ...]
    status: str
    intro: str
    path: Path
    kind: IssueKind = IssueKind.REGULAR
    # A special issue's local send time (``time: "10:00"``); None: [schedule] send_time.
    send_time: time | None = None
    todo_line: int | None = None  # first line still holding "TODO:" (a `brief new` scaffold)

    @property
    def label(self) -> str:
        return f"{self.number:03d}"

    @property
    def special(self) -> bool:
        return self.kind is IssueKind.SPECIAL


@dataclass(frozen=True)
class Library:
    """All content of the repository, validated and cross-checked."""

    root: Path
    glossary: Mapping[str, GlossaryEntry]
    museum: Mapping[str, MuseumStory]
    issues: tuple[Issue, ...] = field(default=())
    # Dates that issue files claim but that were left out for problems (their own or
    # their entries'): the daemon neither skips nor assembles such a slot (read_library).
    withheld: frozenset[date] = frozenset()

    def issue(self, ref: str | int) -> Issue:
        """Find an issue by number (``3``, ``"003"``) or by path."""
        text = str(ref)
        if text.isdigit():
            for issue in self.issues:
                if issue.number == int(text):
                    return issue
        else:
            wanted = Path(text).resolve()
            for issue in self.issues:
                if issue.path.resolve() == wanted:
                    return issue
        raise NotFound(f"no issue {text} in {self.root / 'issues'}")

    def next_number(self) -> int:
        """The number a new issue takes, regular or special: one past the highest."""
        return max((i.number for i in self.issues), default=0) + 1

    def next_unsent(self) -> Issue | None:
        """The lowest-numbered issue not yet sent: the one the editor works on."""
        return next((i for i in self.issues if i.status != "sent"), None)

    def taken(self) -> dict[str, Issue]:
        """Every ``kind:slug`` that some issue file carries, with that issue."""
        out: dict[str, Issue] = {}
        for issue in self.issues:
            for slug in issue.glossary:
                out[f"glossary:{slug}"] = issue
            for slug in issue.museum:
                out[f"museum:{slug}"] = issue
        return out


# ---------------------------------------------------------------------------
# Reading one file


@dataclass
class _Doc:
    """A file split into frontmatter values, their lines, and a body."""

    path: Path
    meta: dict[str, Any]
    lines: dict[str, int]
    item_lines: dict[str, list[int]]
    body: str
    body_line: int  # file line number of the body's first line, minus one
    todo_line: int | None = None  # first line holding TODO_MARK, if any


# What `brief new` writes where the editor has to fill something in. A file still holding
# it is a draft: fine on its own, an error once it is queued, carried or approved.
TODO_MARK = "TODO:"


# Frontmatter is a flat mapping whose values are text or lists of text; anything nested
# deeper than this is a mistake (or an attack on the recursive YAML composer).
MAX_NESTING = 8
# C0 controls except tab and newline (CR is newline here), DEL and the C1 controls: none
# belongs in an editor's text, and NUL is refused outright by PostgreSQL.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Issue numbers go into the send ledger's integer columns (32-bit on PostgreSQL).
MAX_ISSUE_NUMBER = 999_999
MAX_PRIORITY = 1_000_000
# Issue dates feed calendar arithmetic in the newsletter's zone; far from now it
# overflows, and 0001-01-01 is the "no date" placeholder below.
ISSUE_YEARS = (1970, 9998)


def _control_problem(text: str) -> str | None:
    found = _CONTROL.search(text)
    return f"control character U+{ord(found[0]):04X} is not allowed" if found else None


def _timestamp(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    """YAML's timestamp, or the text itself when it names no real moment (2026-13-45).

    The field's own check then says what is wrong with it, at its line, instead of
    the constructor's ValueError escaping as an internal error.
    """
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError, AttributeError):
        return loader.construct_scalar(node)


class _Loader(yaml.SafeLoader):
    """SafeLoader whose constructors fail only with a YAMLError that carries the line."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError, LookupError) as exc:
            # e.g. "!!int x": the constructor's own exception, not a YAML one.
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {node.tag.rpartition(':')[2]} value: {exc}",
                node.start_mark,
            ) from None


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _too_deep(fm: str) -> int | None:
    """The line where nesting passes MAX_NESTING, found with the (iterative) parser
    before the recursive composer could overflow the stack; None when shallow."""
    depth = 0
    for event in yaml.parse(fm, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING:
                return event.start_mark.line + 1 if event.start_mark else 1
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


def _read(path: Path, shown: str, problems: list[Problem]) -> _Doc | None:
    def fail(line: int, message: str) -> None:
        problems.append(Problem(shown, line, message))

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        fail(line, "not valid UTF-8 text")
        return None
    found = _CONTROL.search(text)
    if found:
        fail(text[: found.start()].count("\n") + 1, _control_problem(found[0]) or "")
        return None
    if not text.startswith("---"):
        fail(1, "missing YAML frontmatter: the file must start with a line '---'")
        return None
    handler = frontmatter.YAMLHandler()
    try:
        fm, body = handler.split(text)
    except ValueError:
        fail(1, "frontmatter is not closed: add a line '---' after it")
        return None
    try:
        deep = _too_deep(fm)
        if deep is not None:
            fail(deep, f"value nested more than {MAX_NESTING} levels deep")
            return None
        loader = _Loader(fm)
        try:
            node = loader.get_single_node()
            meta = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fail(line, f"bad YAML in frontmatter: {reason}")
        return None
    if meta is None:
        meta, node = {}, None
    if not isinstance(meta, dict):
        fail(2, "frontmatter must be a mapping of fields (key: value)")
        return None
    lines: dict[str, int] = {}
    item_lines: dict[str, list[int]] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            lines[str(key_node.value)] = key_node.start_mark.line + 1
            if isinstance(value_node, yaml.SequenceNode):
                item_lines[str(key_node.value)] = [v.start_mark.line + 1 for v in value_node.value]
    body_line = text[: len(text) - len(body)].count("\n")
    at = text.find(TODO_MARK)
    todo_line = text[:at].count("\n") + 1 if at >= 0 else None
    return _Doc(path, meta, lines, item_lines, body, body_line, todo_line)


class _Fields:
    """Typed frontmatter access that records a Problem instead of raising."""

    def __init__(self, doc: _Doc, shown: str, problems: list[Problem]):
        self.doc, self.shown, self.problems = doc, shown, problems

    def line(self, key: str) -> int:
        return self.doc.lines.get(key, 2)

    def fail(self, key: str | None, message: str, line: int | None = None) -> None:
        at = line if line is not None else (self.line(key) if key else 1)
        self.problems.append(Problem(self.shown, at, message))

    def only(self, allowed: Iterable[str]) -> None:
        allowed = tuple(allowed)
        for key in self.doc.meta:
            if key not in allowed:
                self.fail(key, f"unknown field '{key}' (allowed: {', '.join(allowed)})")

    def text(self, key: str, required: bool = True) -> str:
        value = self.doc.meta.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(None, f"missing field '{key}'", line=2)
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.fail(key, f"field '{key}' must be text")
            return ""
        text = str(value).strip()
        bad = _control_problem(text)
        if bad:
            # A YAML escape ("\0") gets past the check of the raw file.
            self.fail(key, f"field '{key}': {bad}")
            return ""
        return text

    def day(self, key: str, required: bool = True) -> date | None:
        value = self.doc.meta.get(key)
        if value is None:
            if required:
                self.fail(None, f"missing field '{key}'", line=2)
            return None
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError as exc:
                if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", value.strip()):
                    # Shaped like a date but not one: say why (month 13, 30 February).
                    self.fail(key, f"field '{key}': {value.strip()!r} is not a real date ({exc})")
                    return None
        elif isinstance(value, date) and not hasattr(value, "hour"):
            return value
        self.fail(key, f"field '{key}' must be a date like 2026-12-02, got {value!r}")
        return None

    def integer(
        self, key: str, required: bool = False, low: int = -MAX_PRIORITY, high: int = MAX_PRIORITY
    ) -> int | None:
        value = self.doc.meta.get(key)
        if value is None:
            if required:
                self.fail(None, f"missing field '{key}'", line=2)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"field '{key}' must be a whole number, got {value!r}")
            return None
        if not low <= value <= high:
            self.fail(key, f"field '{key}' must be between {low} and {high}, got {value}")
            return None
        return value

    def strings(self, key: str, required: bool = True) -> tuple[str, ...]:
        value = self.doc.meta.get(key)
        if value is None:
            if required:
                self.fail(None, f"missing field '{key}'", line=2)
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"field '{key}' must be a list of text values")
            return ()
        for v in value:
            bad = _control_problem(v)
            if bad:
                self.fail(key, f"field '{key}': {bad}")
                return ()
        return tuple(v.strip() for v in value)

    def slug(self) -> str:
        slug = self.doc.meta.get("slug") or self.doc.path.stem
        if not isinstance(slug, str) or not _SLUG.match(slug):
            self.fail(
                "slug" if "slug" in self.doc.meta else None,
                f"slug {slug!r} must be lower-case words joined by hyphens",
            )
        return str(slug)


def _md() -> MarkdownIt:
    return MarkdownIt("commonmark")


def _sections(
    doc: _Doc, shown: str, expected: tuple[str, ...], problems: list[Problem]
) -> tuple[Section, ...]:
    """Split a body at ``##`` headings, checking names and order against ``expected``."""
    src = doc.body.splitlines()
    tokens = _md().parse(doc.body)
    heads: list[tuple[str, int, int]] = []  # title, body line index, level
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.map:
            heads.append((tokens[i + 1].content.strip(), tok.map[0], int(tok.tag[1])))
    sections: list[Section] = []
    for n, (title, start, level) in enumerate(heads):
        line = doc.body_line + start + 1
        if level != 2:
            problems.append(Problem(shown, line, f"heading '{title}' must be a '## ' heading"))
        end = heads[n + 1][1] if n + 1 < len(heads) else len(src)
        body = "\n".join(src[start + 1 : end]).strip("\n")
        sections.append(Section(title, body, line))
        if not body.strip():
            problems.append(Problem(shown, line, f"section '{title}' is empty"))
    titles = [s.title for s in sections]
    for s in sections:
        if s.title not in expected:
            problems.append(
                Problem(
                    shown,
                    s.line,
                    f"unexpected section '{s.title}' (expected, in order: {'; '.join(expected)})",
                )
            )
    if sections and heads[0][1] > 0 and "\n".join(src[: heads[0][1]]).strip():
        problems.append(
            Problem(
                shown, doc.body_line + 1, f"text before the first section '{sections[0].title}'"
            )
        )
    last_line = sections[-1].line if sections else doc.body_line + 1
    known = [s for s in sections if s.title in expected]
    for title in expected:
        if title not in titles:
            problems.append(Problem(shown, last_line, f"missing section '{title}'"))
    order = [expected.index(s.title) for s in known]
    for prev, cur, s in zip(order, order[1:], known[1:], strict=False):
        if cur < prev:
            problems.append(
                Problem(
                    shown,
                    s.line,
                    f"section '{s.title}' is out of order: it comes before '{expected[prev]}'",
                )
            )
        elif cur == prev:
            problems.append(Problem(shown, s.line, f"section '{s.title}' appears twice"))
    return tuple(sections)


_LABELLED = re.compile(r"^\*\*(?P<label>[^*]+?):?\*\*:?\s*(?P<text>.+)$", re.S)


def _reality_check(section: Section | None, shown: str, problems: list[Problem]) -> tuple[str, str]:
    if section is None:
        return "", ""
    found: dict[str, str] = {}
    for para in re.split(r"\n\s*\n", section.markdown.strip()):
        m = _LABELLED.match(para.strip())
        if m:
            found[m["label"].strip().rstrip(":")] = m["text"].strip()
    for label in (VENDOR_SAYS, IN_PRACTICE):
        if label not in found:
            problems.append(
                Problem(
                    shown, section.line, f"Reality Check needs a paragraph starting '**{label}:**'"
                )
            )
    return found.get(VENDOR_SAYS, ""), found.get(IN_PRACTICE, "")


def _questions(
    section: Section | None, shown: str, problems: list[Problem]
) -> tuple[Question, ...]:
    if section is None:
        return ()
    src = section.markdown.splitlines()
    tokens = _md().parse(section.markdown)
    items: list[Question] = []
    depth = 0
    saw_list = False
    for tok in tokens:
        if tok.type == "ordered_list_open":
            depth += 1
            saw_list = True
        elif tok.type == "ordered_list_close":
            depth -= 1
        elif tok.type == "list_item_open" and depth == 1 and tok.map:
            raw = "\n".join(src[tok.map[0] : tok.map[1]]).strip()
            raw = re.sub(r"^\d+[.)]\s*", "", raw)
            raw = "\n".join(line.strip() for line in raw.splitlines()).strip()
            m = re.match(r"^\*\*(.+?)\*\*\s*(.*)$", raw, re.S)
            q = Question(m[1].strip(), m[2].strip()) if m else Question(raw, "")
            items.append(q)
    if not saw_list or not items:
        problems.append(
            Problem(shown, section.line, "The Questions to Ask must be a numbered list (1. 2. 3.)")
        )
    return tuple(items)


# ---------------------------------------------------------------------------
# The three kinds


def shown_path(path: Path, root: Path) -> str:
    """A file as problems and reports name it: relative to the newsletter's folder, else
    as it is."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


GLOSSARY_FIELDS = (
    "term",
    "slug",
    "category",
    "vendor_meaning",
    "actual_meaning",
    "queued",
    "priority",
)
MUSEUM_FIELDS = ("title", "slug", "organisation", "date", "cost", "sources", "queued", "priority")
ISSUE_FIELDS = (
    "number",
    "date",
    "subject",
    "preheader",
    "glossary",
    "museum",
    "status",
    "kind",
    "time",
)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_glossary(path: Path, root: Path, problems: list[Problem]) -> GlossaryEntry | None:
    """Parse one glossary entry, appending its problems; None if unreadable."""
    shown = shown_path(path, root)
    doc = _read(path, shown, problems)
    if doc is None:
        return None
    f = _Fields(doc, shown, problems)
    f.only(GLOSSARY_FIELDS)
    sections = _sections(doc, shown, GLOSSARY_SECTIONS, problems)
    by_title = {s.title: s for s in sections}
    says, practice = _reality_check(by_title.get("Reality Check"), shown, problems)
    questions = _questions(by_title.get("The Questions to Ask"), shown, problems)
    return GlossaryEntry(
        slug=f.slug(),
        term=f.text("term"),
        category=f.text("category"),
        vendor_meaning=f.text("vendor_meaning"),
        actual_meaning=f.text("actual_meaning"),
        queued=f.day("queued", required=False),
        priority=f.integer("priority"),
        sections=sections,
        vendor_says=says,
        in_practice=practice,
        questions=questions,
        path=path,
        todo_line=doc.todo_line,
    )


def parse_museum(path: Path, root: Path, problems: list[Problem]) -> MuseumStory | None:
    """Parse one Failure Museum story, appending its problems; None if unreadable."""
    shown = shown_path(path, root)
    doc = _read(path, shown, problems)
    if doc is None:
        return None
    f = _Fields(doc, shown, problems)
    f.only(MUSEUM_FIELDS)
    cost = f.text("cost")
    if cost and not re.search(r"\d", cost):
        f.fail(
            "cost", f'cost {cost!r} must be a figure with a currency or unit, e.g. "$440 million"'
        )
    sources = f.strings("sources")
    if "sources" in doc.meta and not sources:
        f.fail("sources", "sources must list at least one URL")
    for i, url in enumerate(sources):
        if not _URL.match(url):
            lines = doc.item_lines.get("sources", [])
            f.fail(
                "sources",
                f"source {url!r} is not an http(s) URL",
                line=lines[i] if i < len(lines) else None,
            )
    return MuseumStory(
        slug=f.slug(),
        title=f.text("title"),
        organisation=f.text("organisation"),
        date=f.day("date") or date.min,
        cost=cost,
        sources=sources,
        queued=f.day("queued", required=False),
        priority=f.integer("priority"),
        sections=_sections(doc, shown, MUSEUM_SECTIONS, problems),
        path=path,
        todo_line=doc.todo_line,
    )


@dataclass(frozen=True)
class _IssueLines:
    glossary: tuple[int, ...]
    museum: tuple[int, ...]
    date: int
    number: int


def parse_issue(
    path: Path, root: Path, problems: list[Problem]
) -> tuple[Issue, _IssueLines] | None:
    """Parse one issue file, appending its problems; None if unreadable."""
    shown = shown_path(path, root)
    doc = _read(path, shown, problems)
    if doc is None:
        return None
    f = _Fields(doc, shown, problems)
    f.only(ISSUE_FIELDS)
    number = f.integer("number", required=True, low=1, high=MAX_ISSUE_NUMBER) or 0
    day = f.day("date")
    if day is not None and not ISSUE_YEARS[0] <= day.year <= ISSUE_YEARS[1]:
        f.fail(
            "date",
            f"field 'date': the year must be between {ISSUE_YEARS[0]} and "
            f"{ISSUE_YEARS[1]}, got {day.isoformat()}",
        )
        day = None
    status = f.text("status") or "draft"
    if status not in STATUSES:
        f.fail("status", f"status {status!r} must be one of: {', '.join(STATUSES)}")
    kind_text = f.text("kind", required=False) or IssueKind.REGULAR.value
    if kind_text not in tuple(IssueKind):
        f.fail("kind", f"kind {kind_text!r} must be one of: {', '.join(IssueKind)}")
        kind_text = IssueKind.REGULAR.value
    kind = IssueKind(kind_text)
    special = kind is IssueKind.SPECIAL
    # A special issue may carry no glossary entry and no museum story at all.
    glossary = f.strings("glossary", required=not special)
    museum = f.strings("museum", required=not special)
    if "glossary" in doc.meta and not glossary and not special:
        f.fail("glossary", "an issue carries at least one glossary entry")
    send_time = _clock(f, doc.meta.get("time"), special)
    m = _ISSUE_NAME.match(path.name)
    if not m:
        problems.append(Problem(shown, 1, "issue file name must be NNN-YYYY-MM-DD.md"))
    else:
        if number and int(m[1]) != number:
            f.fail("number", f"number {number} does not match the file name {path.name}")
        if day and m[2] != day.isoformat():
            f.fail("date", f"date {day} does not match the file name {path.name}")
    issue = Issue(
        number=number,
        date=day or date.min,
        subject=f.text("subject"),
        preheader=f.text("preheader", required=False),
        glossary=glossary,
        museum=museum,
        status=status,
        intro=doc.body.strip("\n"),
        path=path,
        kind=kind,
        send_time=send_time,
        todo_line=doc.todo_line,
    )
    lines = _IssueLines(
        glossary=tuple(doc.item_lines.get("glossary", [f.line("glossary")] * len(glossary))),
        museum=tuple(doc.item_lines.get("museum", [f.line("museum")] * len(museum))),
        date=f.line("date"),
        number=f.line("number"),
    )
    return issue, lines


def _clock(f: _Fields, value: Any, special: bool) -> time | None:
    """A special issue's ``time:`` as a local time of day; None when absent."""
    if value is None:
        return None
    if not special:
        f.fail(
            "time",
            "field 'time' is only for special issues (kind: special); a regular "
            "issue goes out at [schedule] send_time",
        )
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 10:00 as the sexagesimal number 600 (minutes).
        return time(value // 60, value % 60)
    m = _CLOCK.match(str(value).strip()) if isinstance(value, str) else None
    if m is None:
        f.fail("time", f"field 'time' must be a time of day like \"10:00\", got {value!r}")
        return None
    return time(int(m[1]), int(m[2]))


def drafts(library: Library) -> list[str]:
    """Warnings for the entries and stories still holding ``TODO:`` (neither queued nor
    carried, or they would be errors) and the unsent issues still holding it."""
    items: list[GlossaryEntry | MuseumStory | Issue] = [
        *library.glossary.values(),
        *library.museum.values(),
        *(i for i in library.issues if i.status != "sent"),
    ]
    return sorted(
        f"{shown_path(item.path, library.root)}:{item.todo_line}: warning: still holds "
        f"'{TODO_MARK}': fill it in"
        for item in items
        if item.todo_line is not None
    )


def _sorted_md(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.md") if p.is_file()) if folder.is_dir() else []


def load_content(settings: Settings) -> Library:
    """All of a newsletter's content, with issue dates checked against its calendar."""
    return load_library(settings.root, _slot_check(settings))


def read_content(settings: Settings) -> Loaded:
    """The valid part of a newsletter's content and every problem (for the public side)."""
    return read_library(settings.root, _slot_check(settings))


def _slot_check(settings: Settings) -> Callable[[date], bool]:
    return partial(is_slot_date, settings.schedule)


@dataclass(frozen=True)
class Loaded:
    """What ``read_library`` found: a Library of the files without problems, and the problems."""

    library: Library
    problems: tuple[Problem, ...]


def load_library(root: Path, is_slot: Callable[[date], bool] | None = None) -> Library:
    """Load and validate all content under ``root``; raise ContentError with every problem.

    ``is_slot`` tells whether a date is on the cadence (from the calendar).
    """
    loaded = read_library(root, is_slot)
    if loaded.problems:
        raise ContentError(loaded.problems)
    return loaded.library


def read_library(root: Path, is_slot: Callable[[date], bool] | None = None) -> Loaded:
    """Load all content under ``root`` without raising: every problem, and a Library of
    only the files that have none (issues also need every entry they carry to be valid).

    The public archive is built from this, so one broken draft leaves the rest up.
    """
    problems: list[Problem] = []
    glossary: dict[str, GlossaryEntry] = {}
    museum: dict[str, MuseumStory] = {}
    parsers: tuple[tuple[str, Callable, dict], ...] = (
        ("glossary", parse_glossary, glossary),
        ("museum", parse_museum, museum),
    )
    for folder, parse, into in parsers:
        for path in _sorted_md(root / folder):
            item = parse(path, root, problems)
            if item is None:
                continue
            if item.slug in into:
                first = shown_path(into[item.slug].path, root)
                problems.append(
                    Problem(
                        shown_path(path, root), 1, f"duplicate slug '{item.slug}' (also {first})"
                    )
                )
                continue
            into[item.slug] = item
            if item.todo_line is not None and item.queued is not None:
                problems.append(
                    Problem(
                        shown_path(path, root),
                        item.todo_line,
                        f"still holds '{TODO_MARK}' from `brief new`: fill it in before "
                        "queueing it (or remove 'queued:')",
                    )
                )

    issues: list[Issue] = []
    used: dict[str, str] = {}
    numbers: dict[int, str] = {}
    dates: dict[date, str] = {}
    issue_files = _sorted_md(root / "issues")
    for path in issue_files:
        parsed = parse_issue(path, root, problems)
        if parsed is None:
            continue
        issue, lines = parsed
        shown = shown_path(path, root)
        if issue.number:
            if issue.number in numbers:
                problems.append(
                    Problem(
                        shown,
                        lines.number,
                        f"issue number {issue.number} is also {numbers[issue.number]}",
                    )
                )
            numbers.setdefault(issue.number, shown)
        if issue.date != date.min and not issue.special:
            # A special issue goes at any date (and may share one with a regular issue).
            if is_slot is not None and not is_slot(issue.date):
                problems.append(
                    Problem(
                        shown,
                        lines.date,
                        f"date {issue.date} is not a send slot "
                        "on the every-other-Wednesday cadence",
                    )
                )
            if issue.date in dates:
                problems.append(
                    Problem(shown, lines.date, f"date {issue.date} is also {dates[issue.date]}")
                )
            dates.setdefault(issue.date, shown)
        for kind, slugs, at, known in (
            ("glossary", issue.glossary, lines.glossary, glossary),
            ("museum", issue.museum, lines.museum, museum),
        ):
            for i, slug in enumerate(slugs):
                line = at[i] if i < len(at) else 1
                if slug not in known:
                    problems.append(Problem(shown, line, f"unknown {kind} slug '{slug}'"))
                    continue
                todo = known[slug].todo_line
                if todo is not None and issue.status != "sent":
                    problems.append(
                        Problem(
                            shown,
                            line,
                            f"{kind} entry '{slug}' still holds '{TODO_MARK}' "
                            f"({shown_path(known[slug].path, root)}:{todo}): fill it in first",
                        )
                    )
                key = f"{kind}:{slug}"
                if key in used:
                    problems.append(
                        Problem(
                            shown, line, f"{kind} entry '{slug}' is already used by {used[key]}"
                        )
                    )
                used.setdefault(key, shown)
        if issue.todo_line is not None and issue.status == "approved":
            problems.append(
                Problem(shown, issue.todo_line, f"approved but still holds '{TODO_MARK}'")
            )
        issues.append(issue)
    issues.sort(key=lambda i: i.number)
    broken = {p.path for p in problems}

    def ok(item: GlossaryEntry | MuseumStory | Issue) -> bool:
        return shown_path(item.path, root) not in broken

    good_glossary = {slug: e for slug, e in glossary.items() if ok(e)}
    good_museum = {slug: s for slug, s in museum.items() if ok(s)}
    good_issues = tuple(
        i
        for i in issues
        if ok(i)
        and all(s in good_glossary for s in i.glossary)
        and all(s in good_museum for s in i.museum)
    )
    good_paths = {i.path for i in good_issues}
    withheld = set()
    for path in issue_files:
        m = _ISSUE_NAME.match(path.name)
        if path in good_paths or not m:
            continue
        try:
            withheld.add(date.fromisoformat(m[2]))
        except ValueError:
            continue
    library = Library(root, good_glossary, good_museum, good_issues, frozenset(withheld))
    return Loaded(library, tuple(problems))
