"""Sent issues edited since they went out: the fingerprint each campaign recorded
(``store.ledger``) against the files now (``content.fingerprint``). For `brief check`,
which warns, and the archive, which says "updated on …" with what changed."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from pipeline.config import Settings
from pipeline.content.fingerprint import Edit, edit_since
from pipeline.content.library import Library, shown_path
from pipeline.store.ledger import sent_fingerprints


def edits_after_sending(engine: Engine, library: Library, settings: Settings) -> dict[int, Edit]:
    """issue number -> its edit, for every sent issue whose content changed since its send."""
    sent = [i for i in library.issues if i.status == "sent"]
    if not sent:
        return {}  # nothing sent: no need to read the store
    recorded = sent_fingerprints(engine)
    out: dict[int, Edit] = {}
    for issue in sent:
        if issue.number in recorded:
            edit = edit_since(recorded[issue.number], issue, library, settings.schedule.timezone)
            if edit:
                out[issue.number] = edit
    return out


def edit_warnings(edits: dict[int, Edit], library: Library) -> list[str]:
    """One `brief check` warning per edited sent issue, at its file."""
    lines = []
    for issue in library.issues:
        edit = edits.get(issue.number)
        if edit is None:
            continue
        shown = shown_path(issue.path, library.root)
        lines.append(
            f"{shown}:1: warning: issue {issue.number:03d} was edited after it was sent "
            f"(changed: {', '.join(edit.files)}); the archive page says so"
        )
    return lines
