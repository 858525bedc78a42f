"""Every error Brief raises on purpose, as one small hierarchy.

The CLI catches ``BriefError`` once, at its edge, and prints it as one line
with the class's ``exit_code``. The store, the scheduler and the sender raise
these, never web errors; the web apps translate them into pages.

    BriefError
    ├── ConfigError          a setting is wrong or missing (names the key)        exit 2
    ├── ContentError         content does not validate (path:line per problem)    exit 1
    ├── RenderError          a template, Markdown or MJML failure (names template) exit 1
    ├── StoreError           the database refused or is unreachable               exit 1
    │   ├── NotFound         no such list, subscriber, issue…                     exit 1
    │   ├── ImportRefused    an import file is malformed; nothing was changed     exit 1
    │   └── LockLost         the daemon's database lock went to another daemon    exit 1
    ├── TokenError           a link token is malformed, forged or stale           exit 1
    ├── MailboxError         the bounce mailbox cannot be read (IMAP, mbox)       exit 1
    ├── ProviderError        a mail provider failed as a whole                    exit 1
    │   └── ProviderUnavailable  it cannot be reached for now: retry later        exit 1
    └── SendError            a send was refused, paused or left deliveries unknown exit 1
        ├── SendStopped      stopped by a signal or request; run again to resume  exit 75
        └── AddressRefused   an address that cannot go into a To header           exit 1
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class BriefError(Exception):
    """Base of every error Brief raises on purpose."""

    exit_code = 1


class ConfigError(BriefError):
    """A setting is wrong: the message names the key and what is allowed."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One content problem, located as ``path:line``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class ContentError(BriefError):
    """Content failed validation; carries every problem found in one run."""

    def __init__(self, problems: Iterable[Problem]):
        # In the order the editor reads them: file by file, top to bottom (the checks
        # find them in another order; sorted() is stable, so one line keeps its order).
        self.problems = tuple(sorted(problems, key=lambda p: (p.path, p.line)))
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class MailboxError(BriefError):
    """The bounce mailbox cannot be reached, logged into or read (or an mbox file)."""


class RenderError(BriefError):
    """A template, Markdown or MJML failure, naming the template and line."""


class StoreError(BriefError):
    """The database refused an operation or cannot be reached."""


class NotFound(StoreError):
    """No such list, subscriber, issue or campaign."""


class ImportRefused(StoreError):
    """An import file is malformed; the import changed nothing."""


class LockLost(StoreError):
    """This process no longer holds the lock it needed for what it was about to commit."""


class TokenError(BriefError):
    """A link token is malformed, forged, or no longer valid."""


class ProviderError(BriefError):
    """A mail provider failed as a whole (not one recipient)."""


class ProviderUnavailable(ProviderError):
    """The provider cannot be reached for now (refused, timed out): retry later."""


class SendError(BriefError):
    """A send was refused (unapproved issue, no recipients) or paused."""


class SendStopped(SendError):
    """A send stopped on request (SIGTERM, SIGINT) with nothing in doubt: running it again
    resumes. Its exit code is EX_TEMPFAIL, so a supervisor can tell it from a failure."""

    exit_code = 75


class AddressRefused(SendError):
    """A recipient address that cannot go into a To header as it is."""
