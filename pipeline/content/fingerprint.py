"""What an issue was made of when it was sent, and what has changed since.

The fingerprint is a manifest in ``sha256sum`` form: one ``<sha256>  <path>`` line per
content file the issue carries (the issue file, then its glossary entries and museum
stories, paths relative to the newsletter root). The issue file is hashed without its
``status:`` line, because ``brief send`` itself marks the file ``sent`` afterwards
(``assemble.mark_sent``): that edit is bookkeeping, not a change to what readers got.
Hashing the files rather than the rendered email means a template restyle is not an
"edit" of every past issue, and the manifest can say which file changed.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path

from pipeline.content.library import Issue, Library, shown_path

_STATUS_LINE = re.compile(rb"^status:[^\n]*\n?", re.M)


@dataclass(frozen=True)
class Edit:
    """A sent issue whose content changed since: when (the newest change), which files,
    and the same said for readers ("the introduction", "the glossary entry …")."""

    on: date
    files: tuple[str, ...]
    parts: tuple[str, ...]


def content_files(issue: Issue, library: Library) -> list[Path]:
    """The files an issue is made of: itself, then its entries and stories."""
    files = [issue.path]
    files += [library.glossary[s].path for s in issue.glossary if s in library.glossary]
    files += [library.museum[s].path for s in issue.museum if s in library.museum]
    return files


def file_hash(path: Path, *, issue_file: bool = False) -> str | None:
    """sha256 of a content file (an issue file without its ``status:`` line); None if gone."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if issue_file:
        end = data.find(b"\n---", 3)
        head, tail = (data[:end], data[end:]) if end > 0 else (data, b"")
        data = _STATUS_LINE.sub(b"", head, count=1) + tail
    return hashlib.sha256(data).hexdigest()


def manifest(issue: Issue, library: Library) -> dict[str, str]:
    """path -> hash for every file the issue is made of (a missing file is left out)."""
    out: dict[str, str] = {}
    for n, path in enumerate(content_files(issue, library)):
        digest = file_hash(path, issue_file=n == 0)
        if digest is not None:
            out[shown_path(path, library.root)] = digest
    return out


def content_hash(issue: Issue, library: Library) -> str:
    """The manifest as stored with the campaign: ``<sha256>  <path>`` lines."""
    return "\n".join(f"{digest}  {path}" for path, digest in manifest(issue, library).items())


def parse_manifest(text: str) -> dict[str, str]:
    """A stored manifest back as path -> hash (lines that are not ``hash  path`` are skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and re.fullmatch(r"[0-9a-f]{64}", digest):
            out[path] = digest
    return out


def changed_files(sent: str, issue: Issue, library: Library) -> tuple[str, ...]:
    """The files that differ from the stored manifest: edited, added or gone."""
    before = parse_manifest(sent)
    if not before:
        return ()  # nothing recorded (sent before fingerprints existed): nothing to compare
    now = manifest(issue, library)
    return tuple(sorted(p for p in before.keys() | now.keys() if before.get(p) != now.get(p)))


def edit_since(sent: str, issue: Issue, library: Library, zone: tzinfo = UTC) -> Edit | None:
    """The edit of a sent issue, dated by the newest change among the changed files
    (their modification time, in ``zone``); None when nothing changed."""
    files = changed_files(sent, issue, library)
    if not files:
        return None
    times = []
    for rel in files:
        try:
            times.append((library.root / rel).stat().st_mtime)
        except OSError:
            continue  # a file that is gone has no time; the others date the edit
    when = datetime.fromtimestamp(max(times), UTC) if times else datetime.now(UTC)
    return Edit(
        when.astimezone(zone).date(), files, tuple(_part(rel, issue, library) for rel in files)
    )


def _part(rel: str, issue: Issue, library: Library) -> str:
    """A changed file as a reader would name it."""
    path = library.root / rel
    if path == issue.path:
        return "the introduction"
    for entry in library.glossary.values():
        if entry.path == path:
            return f"the glossary entry “{entry.term}”"
    for story in library.museum.values():
        if story.path == path:
            return f"the Failure Museum story “{story.title}”"
    return rel
