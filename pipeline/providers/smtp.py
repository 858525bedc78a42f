"""SMTP through smtplib: one persistent connection per worker, reconnecting on a drop.

Each message is its own MAIL/RCPT/DATA transaction so a refusal is tied to one
recipient: 4xx is transient, 5xx permanent (a "no such mailbox" 5xx also asks for
a suppression). A connection lost before the end of DATA means the server cannot
have the message (safe to retry); lost while waiting for the final answer, the
server may have it, and the result says "unknown" so nobody is mailed twice.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, ProviderError, ProviderUnavailable
from . import UNKNOWN_PREFIX
from .base import OutgoingMessage, Result

_NO_MAILBOX = re.compile(
    r"\b5\.1\.(1|10|2|6)\b|no such (user|mailbox|recipient)|user unknown|unknown user|"
    r"does not exist|mailbox (not found|unavailable)|recipient (address )?rejected",
    re.I,
)
_DROPPED = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, ssl.SSLError, OSError)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_context(ca_file: str, root: Path) -> ssl.SSLContext:
    """Verifying TLS context: the system's trust store, or only ``ca_file`` when set."""
    if not ca_file:
        return ssl.create_default_context()
    path = Path(ca_file).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(f"provider.smtp.ca_file: no such file {str(path)!r}")
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:
        raise ConfigError(
            f"provider.smtp.ca_file: {str(path)!r} holds no PEM certificate ({exc.reason})"
        ) from None


def _text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return " ".join(text.split())[:300]


class SmtpProvider:
    """Sends each message over SMTP; settings in ``[provider.smtp]``."""

    name = "smtp"
    # One message a call: the send loop marks each call in flight before it, so a crash
    # leaves at most one message per connection in doubt.
    max_batch = 1
    idempotent = False

    def __init__(self, settings: Settings):
        t = settings.provider.table("smtp")
        self.host = str(t.get("host", "127.0.0.1"))
        self.port = int(t.get("port", 587))
        self.tls = str(t.get("tls", "starttls"))
        self.username = str(t.get("username", ""))
        self.timeout = float(t.get("timeout", 30))
        self.local_hostname = str(t.get("local_hostname", "")) or None
        self.password = settings.secret("BRIEF_SMTP_PASSWORD")
        self.ssl_context = _tls_context(str(t.get("ca_file", "")), settings.root)
        self.envelope_from = settings.newsletter.from_address
        if self.tls == "none" and not _is_loopback(self.host):
            raise ConfigError(
                f"provider.smtp.tls: 'none' is allowed only for a loopback host, not {self.host!r} "
                "(use starttls or implicit)"
            )
        if self.username and not self.password:
            raise ConfigError(
                "provider.smtp.username: is set but BRIEF_SMTP_PASSWORD is not in the environment"
            )
        self._conn: smtplib.SMTP | None = None
        self.connects = 0

    # -- connection --------------------------------------------------------

    def open(self) -> None:
        """Connect now, so a wrong host or password shows before the first message."""
        self._connection()

    def _connection(self) -> smtplib.SMTP:
        if self._conn is not None:
            return self._conn
        where = f"{self.host}:{self.port}"
        try:
            if self.tls == "implicit":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self.ssl_context,
                )
            else:
                conn = smtplib.SMTP(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            conn.ehlo()
            if self.tls == "starttls":
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderError(
                f"smtp: {where} refused the login for {self.username!r}: {exc.smtp_code} "
                f"{_text(exc.smtp_error)} (check provider.smtp.username and BRIEF_SMTP_PASSWORD)"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            # Not an outage: retrying will not make the certificate right.
            raise ProviderError(
                f"smtp: {where} presented a certificate that is not trusted: "
                f"{exc.verify_message or exc.reason} (check provider.smtp.host, or "
                "provider.smtp.ca_file for a private CA)"
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ProviderError(f"smtp: {where}: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise ProviderUnavailable(
                    f"smtp: {where} answered {exc.smtp_code} {_text(exc.smtp_error)}"
                ) from None
            raise ProviderError(
                f"smtp: {where} answered {exc.smtp_code} {_text(exc.smtp_error)}"
            ) from None
        except _DROPPED as exc:
            raise ProviderUnavailable(f"smtp: cannot connect to {where}: {exc}") from None
        self._conn = conn
        self.connects += 1
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        """Say QUIT when the connection is still up; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            try:
                conn.close()
            except OSError:
                pass

    # -- sending -----------------------------------------------------------

    def push(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """One SMTP transaction per message, on the worker's connection."""
        return [self._send(msg) for msg in messages]

    def _refused(self, msg: OutgoingMessage, stage: str, code: int, resp: bytes) -> Result:
        text = _text(resp)
        reason = f"smtp {code} at {stage}: {text}"
        if code == 421:
            self._drop()  # the server is closing this connection
        if 400 <= code < 500:
            return Result.failed(msg.key, reason, transient=True)
        suppress = stage == "RCPT" and code in (550, 551, 553) and bool(_NO_MAILBOX.search(text))
        return Result.failed(msg.key, reason, transient=False, suppress=suppress)

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except _DROPPED:
            self._drop()

    def _send(self, msg: OutgoingMessage) -> Result:
        conn = self._connection()  # ProviderUnavailable / ProviderError propagate
        # Before the body's final dot, the server cannot have accepted the message.
        try:
            code, resp = conn.mail(self.envelope_from)
            if code != 250:
                self._reset(conn)
                if code >= 500:
                    raise ProviderError(
                        f"smtp: the server refuses the sender {self.envelope_from}: "
                        f"{code} {_text(resp)}"
                    )
                return self._refused(msg, "MAIL", code, resp)
            code, resp = conn.rcpt(msg.to_address)
            if code not in (250, 251):
                self._reset(conn)
                return self._refused(msg, "RCPT", code, resp)
            conn.putcmd("data")
            code, resp = conn.getreply()
            if code != 354:
                self._reset(conn)
                return self._refused(msg, "DATA", code, resp)
            body = msg.raw
            if body.startswith(b".") or b"\n." in body:
                body = re.sub(rb"(?m)^\.", b"..", body)
            if not body.endswith(b"\r\n"):
                body += b"\r\n"
            conn.send(body + b".\r\n")
        except _DROPPED as exc:
            self._drop()
            return Result.failed(
                msg.key,
                f"smtp: connection lost before the message was sent ({exc})",
                transient=True,
            )
        try:
            code, resp = conn.getreply()
        except _DROPPED as exc:
            self._drop()
            return Result.failed(
                msg.key,
                f"{UNKNOWN_PREFIX}smtp connection lost after the message was sent ({exc})",
                transient=False,
            )
        if code != 250:
            return self._refused(msg, "end of DATA", code, resp)
        queued = re.search(r"queued as (\S+)", _text(resp), re.I)
        return Result.accepted(
            msg.key, queued.group(1) if queued else msg.headers.get("Message-ID")
        )
