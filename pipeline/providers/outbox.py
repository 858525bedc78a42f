"""The default provider: each message becomes an ``.eml`` file under the outbox folder.

Nothing leaves the machine. One file per delivery key, written atomically, so a
re-send overwrites instead of duplicating: this provider honours idempotency.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pipeline.private import private_dirs
from pipeline.providers.base import Key, OutgoingMessage, ProviderSetup, Result

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class OutboxProvider:
    """Writes ``<outbox>/<issue>/<key>.eml``."""

    name = "outbox"
    max_batch = 500
    idempotent = True
    # dir: relative to the folder of brief.toml
    settings_schema = {"dir": Key(str, ".brief/outbox")}
    secrets = ()

    def __init__(self, setup: ProviderSetup):
        folder = Path(setup.table["dir"])
        self.root = folder if folder.is_absolute() else setup.root / folder
        self._made: set[Path] = set()

    def folder(self, issue_number: int) -> Path:
        """Where the files of one issue go."""
        return self.root / f"{issue_number:03d}"

    def open(self) -> None:
        private_dirs(self.root)  # the messages carry addresses and personal links

    def push(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """Write each message as a file; a full disk fails the message transiently."""
        results = []
        for msg in messages:
            folder = self.folder(msg.content.issue_number)
            if folder not in self._made:
                private_dirs(folder)
                self._made.add(folder)
            path = folder / f"{_SAFE.sub('_', msg.key)}.eml"
            try:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".eml")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(msg.raw)
                os.replace(tmp, path)
            except OSError as exc:
                results.append(Result.temporary(msg.key, f"outbox: {exc.strerror}", "outbox"))
                continue
            results.append(Result.sent(msg.key, str(path.relative_to(self.root))))
        return results

    def close(self) -> None:
        pass
