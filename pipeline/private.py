"""Files and folders that hold personal data are created private, whatever the umask.

The database (every address, every per-subscriber link key), CSV exports, the outbox and
the ``.brief/`` folder are readable by their owner only: 0600 files, 0700 folders. Only
what Brief creates is changed; a folder the operator made keeps the mode they chose.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dirs(path: Path) -> None:
    """Create ``path`` and its missing parents as 0700 folders (existing ones untouched)."""
    missing: list[Path] = []
    here = path
    while not here.exists():
        missing.append(here)
        if here.parent == here:
            break
        here = here.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it first: theirs to set
        # mkdir's mode passes through the umask; say it exactly.
        folder.chmod(DIR_MODE)


def create_private_file(path: Path) -> bool:
    """Create ``path`` empty and 0600 if it does not exist; True when this call made it.

    SQLite creates a missing database 0644 (less the umask) and gives its -wal and -shm
    files the database file's mode, so making the file first makes all three private.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def open_private(path: str | os.PathLike[str], *, newline: str | None = None):
    """Open ``path`` for writing text (UTF-8, truncated), 0600 even if it existed before."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its old mode through O_CREAT
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "w", encoding="utf-8", newline=newline)
