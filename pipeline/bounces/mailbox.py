"""Where bounce messages come from: the IMAP mailbox of ``[bounces]``, or an mbox file.

IMAP goes through ``imap-tools`` (over the standard library's imaplib) with TLS verified
as the smtp provider verifies it: the system's trust store, or only ``[bounces] ca_file``;
``tls = "none"`` only on loopback (config refuses it elsewhere). The password comes from
``BRIEF_BOUNCES_PASSWORD`` and appears in no message or log line. Messages are read with
``BODY.PEEK[]`` (reading marks nothing) and moved to ``processed_folder`` (or flagged
``\\Seen`` when it is empty) one by one, each only after its result is stored.
"""

from __future__ import annotations

import imaplib
import mailbox as stdlib_mailbox
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.config import BounceSettings, Settings, tls_context
from pipeline.errors import ConfigError, MailboxError

PASSWORD_ENV = "BRIEF_BOUNCES_PASSWORD"


class ImapMailbox:
    """One logged-in session on the bounce folder; use as a context manager."""

    def __init__(self, settings: Settings):
        self.cfg: BounceSettings = settings.bounces
        if not self.cfg.configured:
            raise ConfigError("bounces.imap_host: no bounce mailbox is configured in [bounces]")
        self.password = settings.secret(PASSWORD_ENV) or ""
        if not self.password:
            raise ConfigError(
                f"bounces.username: the mailbox password comes from {PASSWORD_ENV}, "
                "which is not set"
            )
        self.root = settings.root
        self.where = f"{self.cfg.imap_host}:{self.cfg.port}"
        self.box: Any = None

    def __enter__(self) -> ImapMailbox:
        from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
        from imap_tools.errors import MailboxLoginError, MailboxStarttlsError

        cfg = self.cfg
        box: Any
        try:
            if cfg.tls == "implicit":
                context = tls_context(cfg.ca_file, self.root, "bounces.ca_file")
                box = MailBox(cfg.imap_host, cfg.port, timeout=cfg.timeout, ssl_context=context)
            elif cfg.tls == "starttls":
                context = tls_context(cfg.ca_file, self.root, "bounces.ca_file")
                box = MailBoxStartTls(
                    cfg.imap_host, cfg.port, timeout=cfg.timeout, ssl_context=context
                )
            else:
                box = MailBoxUnencrypted(cfg.imap_host, cfg.port, timeout=cfg.timeout)
        except ssl.SSLCertVerificationError as exc:
            raise MailboxError(
                f"bounces: {self.where} presented a certificate that is not trusted "
                f"({exc.verify_message}); set bounces.ca_file to its CA"
            ) from None
        except MailboxStarttlsError:
            raise MailboxError(f"bounces: {self.where} refused STARTTLS") from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"bounces: cannot connect to {self.where}: {_reason(exc)}") from None
        try:
            box.login(cfg.username, self.password, initial_folder=cfg.folder)
        except MailboxLoginError:
            _close(box)
            # The server's words could echo what was sent; the user name is enough.
            raise MailboxError(
                f"bounces: {self.where} refused the login of {cfg.username!r} "
                f"(or has no folder {cfg.folder!r}); check {PASSWORD_ENV}"
            ) from None
        except Exception as exc:  # noqa: BLE001 - imap-tools' folder errors, a dropped socket
            _close(box)
            raise MailboxError(
                f"bounces: {self.where}: cannot open folder {cfg.folder!r}: {_reason(exc)}"
            ) from None
        self.box = box
        return self

    def __exit__(self, *exc: object) -> None:
        box, self.box = self.box, None
        if box is not None:
            _close(box)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """(uid, raw bytes) of each message waiting in the folder, oldest first."""
        criteria = "ALL" if self.cfg.processed_folder else "UNSEEN"
        try:
            uids = self.box.uids(criteria)
        except Exception as exc:  # noqa: BLE001
            raise MailboxError(
                f"bounces: {self.where}: cannot list messages: {_reason(exc)}"
            ) from None
        for uid in uids:
            try:
                typ, data = self.box.client.uid("fetch", uid, "(BODY.PEEK[])")
            except (OSError, imaplib.IMAP4.error) as exc:
                raise MailboxError(f"bounces: {self.where}: fetch failed: {_reason(exc)}") from None
            raw = next((d[1] for d in data or [] if isinstance(d, tuple) and len(d) > 1), None)
            if typ == "OK" and isinstance(raw, bytes):
                yield uid, raw

    def done(self, uid: str) -> None:
        """Move (or flag) a message whose result is stored."""
        try:
            if self.cfg.processed_folder:
                self._ensure_processed_folder()
                self.box.move(uid, self.cfg.processed_folder)
            else:
                self.box.flag(uid, "\\Seen", True)
        except Exception as exc:  # noqa: BLE001 - read again next time: changes nothing
            raise MailboxError(
                f"bounces: {self.where}: cannot move a processed message to "
                f"{self.cfg.processed_folder!r}: {_reason(exc)}"
            ) from None

    _folder_ready = False

    def _ensure_processed_folder(self) -> None:
        if self._folder_ready:
            return
        name = self.cfg.processed_folder
        if not self.box.folder.exists(name):
            self.box.folder.create(name)
        self._folder_ready = True


def _close(box: Any) -> None:
    try:
        box.logout()
    except Exception:  # noqa: BLE001 - leaving anyway
        try:
            box.client.shutdown()
        except Exception:  # noqa: BLE001
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return " ".join(str(exc).split())[:200] or type(exc).__name__


@contextmanager
def open_mailbox(settings: Settings) -> Iterator[ImapMailbox]:
    """The configured IMAP mailbox, logged in; logged out on leaving."""
    with ImapMailbox(settings) as box:
        yield box


def mbox_messages(path: Path) -> Iterator[tuple[int, bytes]]:
    """(index, raw bytes) of each message in an mbox file."""
    if not path.is_file():
        raise MailboxError(f"{path}: no such mbox file")
    box = stdlib_mailbox.mbox(str(path), create=False)
    try:
        for i, key in enumerate(box.iterkeys()):
            yield i, box.get_bytes(key)
    finally:
        box.close()
