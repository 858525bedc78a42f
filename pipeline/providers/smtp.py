"""SMTP through smtplib: one persistent connection per worker, reconnecting on a drop.

Each message is its own MAIL/RCPT/DATA transaction so a refusal is tied to one
recipient. Every server answer is judged as a class (``Stage`` × ``Reply``, see
``judge``): 4xx is transient, 5xx permanent (a "no such mailbox" 5xx also asks
for a suppression), a refusal of the sender or the account pauses the send.

A connection lost before the body was written means the server cannot have the
message (safe to retry); lost once the final dot was written, the server may have
it, and the result is ``UNKNOWN`` so nobody is mailed twice. The send loop uses the
staged form (``stage``: MAIL, RCPT, DATA, pipelined when the server offers it, and the
body; ``finish``: the final dot and its answer; or ``abort``), so the commit that
marks a message in flight runs while the server receives it. ``push`` never
raises part-way through a batch: what was accepted stays ``SENT``, what could not
be handed over is ``NOT_TAKEN`` (unreachable) or ``SENDER`` (refused sender).
"""

from __future__ import annotations

import enum
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.config import is_loopback, tls_context
from pipeline.errors import ConfigError, ProviderError, ProviderUnavailable
from pipeline.mail import VERP_PLACEHOLDER, verp_address
from pipeline.providers.base import (
    TIMEOUT_KEY,
    Fate,
    Key,
    OutgoingMessage,
    ProviderSetup,
    Result,
    scrub,
)
from pipeline.providers.dkim import Signer, dkim_key, load_signer

_NO_MAILBOX = re.compile(
    r"\b5\.1\.(1|10|2|6)\b|no such (user|mailbox|recipient)|user unknown|unknown user|"
    r"does not exist|mailbox (not found|unavailable)|recipient (address )?rejected",
    re.I,
)
# An account that may not send through this server: every recipient would get the same.
_RELAY_DENIED = re.compile(
    r"relay(ing)? (access )?(denied|not permitted)|not allowed to relay", re.I
)
# 530 authentication required, 535 credentials invalid, 538 encryption required (RFC 4954)
_SENDER_CODES = frozenset({530, 535, 538})
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s+|$)")
_DROPPED = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, ssl.SSLError, OSError)


class Stage(enum.Enum):
    """The step of one SMTP transaction a reply answers."""

    MAIL = "MAIL FROM"
    RCPT = "RCPT TO"
    DATA = "DATA"
    END = "end of DATA"


@dataclass(frozen=True)
class Reply:
    """One server reply: the code, the RFC 3463 enhanced status, and the text after them."""

    number: int
    enhanced: str  # "5.1.1", or "" when the server gives none
    text: str

    @classmethod
    def parse(cls, number: int, resp: bytes | str) -> Reply:
        """Split smtplib's reply; the enhanced code repeated on each line is said once."""
        raw = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
        lines = [" ".join(line.split()) for line in raw.splitlines()] or [""]
        found = _ENHANCED.match(lines[0])
        enhanced = found.group(1) if found else ""
        if enhanced:
            lines = [
                line[len(enhanced) :].lstrip() if line.startswith(enhanced) else line
                for line in lines
            ]
        return cls(number, enhanced, " ".join(p for p in lines if p)[:300])

    @property
    def code(self) -> str:
        """The machine part of the cause, e.g. "550 5.1.1"."""
        return f"{self.number} {self.enhanced}".strip()

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


# The replies that let a transaction go on, for MAIL, RCPT and DATA in turn.
_STAGES = (Stage.MAIL, Stage.RCPT, Stage.DATA)
_OK = ((250,), (250, 251), (354,))


def judge(stage: Stage, reply: Reply, key: str, address: str) -> Result:
    """The fate of the message for ``address`` refused with ``reply`` at ``stage``.

    Refusals of the sender or the account (5xx at MAIL FROM, authentication
    required, relaying denied) are SENDER: the same for every recipient, so the
    send pauses instead of writing recipients off. A 4xx at MAIL FROM is the
    server not taking mail at all for now: NOT_TAKEN, no try counted against the
    recipient. Otherwise 4xx is TRANSIENT and 5xx PERMANENT.
    """
    reason = scrub(reply.text, address)
    permanent = reply.number >= 500
    if reply.number in _SENDER_CODES or (permanent and stage is Stage.MAIL):
        return Result.sender_problem(key, reason, reply.code)
    if permanent and _RELAY_DENIED.search(reply.text):
        return Result.sender_problem(key, reason, reply.code)
    if not permanent and stage is Stage.MAIL:
        return Result.not_taken(key, reason, reply.code)
    if not permanent:
        return Result.temporary(key, reason, reply.code)
    suppress = (
        stage is Stage.RCPT
        and reply.number in (550, 551, 553)
        and bool(_NO_MAILBOX.search(f"{reply.enhanced} {reply.text}"))
    )
    return Result.permanent(key, reason, reply.code, suppress=suppress)


def _data(msg: OutgoingMessage, signer: Signer | None = None) -> bytes:
    """The message as DATA carries it: dot-stuffed, ending in CRLF (without the dot).
    A message from MessageFactory has it ready (``smtp_data``, stuffed once per issue);
    any other is stuffed here. With a ``signer``, its DKIM-Signature goes first, made
    over the bytes before stuffing (what the receiver has once it unstuffs them; the
    header's own folded lines start with "D" or a space, never a dot)."""
    signature = b"" if signer is None else signer.sign(_crlf(msg.raw))
    body = getattr(msg, "smtp_data", None)
    if body is None:
        body = msg.raw
        if body.startswith(b".") or b"\n." in body:
            body = re.sub(rb"(?m)^\.", b"..", body)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return signature + body if signature else body


def _crlf(raw: bytes) -> bytes:
    """``raw`` ending in CRLF, as DATA sends it (the signed body must be the sent one)."""
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def _lost(exc: BaseException) -> str:
    """The class of a lost connection: smtplib reports its read timeout as a disconnect."""
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return "timeout"
    return "disconnected"


@dataclass(frozen=True)
class _Refusal:
    """No message can go now (no connection, or the sender is refused): the same
    answer for every message still to go in the batch."""

    fate: Fate  # NOT_TAKEN or SENDER
    code: str
    reason: str  # short, without any recipient's address
    message: str  # the whole story, for the error raised when nothing was answered yet

    def result(self, key: str) -> Result:
        return Result(key, self.fate, code=self.code, reason=self.reason)

    def error(self) -> ProviderError:
        if self.fate is Fate.NOT_TAKEN:
            return ProviderUnavailable(self.message)
        return ProviderError(self.message)


@dataclass(frozen=True)
class Staged:
    """A message whose transaction is started: either refused on the way (``outcome``),
    or its body written on ``conn`` and the server waiting for the final dot."""

    message: OutgoingMessage
    outcome: Result | _Refusal | None
    conn: smtplib.SMTP | None = None
    dot_sent: bool = False


def _return_path(key: str, value: str) -> str:
    """``return_path``: empty, or an address with ``{key}`` once in its local part."""
    if not value:
        return value
    local, at, domain = value.rpartition("@")
    if value.count(VERP_PLACEHOLDER) != 1 or VERP_PLACEHOLDER not in local:
        raise ConfigError(
            f"{key}: must hold {VERP_PLACEHOLDER} once, before the @, "
            'e.g. "bounces+{key}@news.example.com"'
        )
    from email_validator import EmailNotValidError, validate_email

    sample = verp_address(value, "issue-001.subscriber-1")
    try:
        validate_email(
            sample, check_deliverability=False, allow_smtputf8=False, globally_deliverable=False
        )
    except EmailNotValidError as exc:
        raise ConfigError(f"{key}: {sample!r} is not an email address ({exc})") from None
    return value


CA_FILE_KEY = "provider.smtp.ca_file"


class SmtpProvider:
    """Sends each message over SMTP; settings in ``[provider.smtp]``."""

    name = "smtp"
    # One message a call: the send loop marks each call in flight before it, so a crash
    # leaves at most one message per connection in doubt.
    max_batch = 1
    idempotent = False
    settings_schema = {
        "host": Key(str, "127.0.0.1"),
        "port": Key(int, 587, bounds=(1, 65535)),
        "tls": Key(str, "starttls", choices=("starttls", "implicit", "none")),
        "username": Key(str, ""),
        "timeout": TIMEOUT_KEY,
        # Servers close connections idle for a while (Postfix: smtpd_timeout, 300 s; many
        # relays far less); past this many seconds a NOOP checks one before it is reused.
        "idle_limit": Key((int, float), 10),
        "local_hostname": Key(str, ""),
        "ca_file": Key(str, ""),  # a PEM CA bundle to trust instead of the system's
        # VERP: "bounces+{key}@news.example.com" puts each delivery's key into MAIL FROM,
        # so a bounce names its delivery even when the report is mangled ("": From).
        "return_path": Key(str, "", check=_return_path),
        # [provider.smtp.dkim] selector, domain, key_file: sign each message (empty: don't)
        "dkim": dkim_key(),
    }
    secrets = ("BRIEF_SMTP_PASSWORD",)

    @classmethod
    def check_setup(cls, setup: ProviderSetup) -> None:
        """The files the table names (``ca_file``, the DKIM key), checked without
        connecting or reading a secret: ``brief check`` calls this, so a bad file is a
        settings error at once, not at the slot."""
        tls_context(str(setup.table["ca_file"]), setup.root, CA_FILE_KEY)
        load_signer(
            "provider.smtp.dkim", setup.table.get("dkim", {}), setup.root, setup.from_address
        )

    def __init__(self, setup: ProviderSetup):
        t = setup.table
        self.host = str(t["host"])
        self.port = int(t["port"])
        self.tls = str(t["tls"])
        self.username = str(t["username"])
        self.timeout = float(t["timeout"])
        self.idle_limit = float(t["idle_limit"])
        self.local_hostname = str(t["local_hostname"]) or None
        self.password = setup.secret("BRIEF_SMTP_PASSWORD")
        self.ssl_context = tls_context(str(t["ca_file"]), setup.root, CA_FILE_KEY)
        self.signer = load_signer(
            "provider.smtp.dkim", t.get("dkim", {}), setup.root, setup.from_address
        )
        self.envelope_from = setup.from_address
        self._mail_from = f"FROM:<{self.envelope_from}>"
        self.return_path = str(t["return_path"])
        if self.tls == "none" and not is_loopback(self.host):
            raise ConfigError(
                f"provider.smtp.tls: 'none' is allowed only for a loopback host, not {self.host!r} "
                "(use starttls or implicit)"
            )
        if self.username and not self.password:
            raise ConfigError(
                "provider.smtp.username: is set but BRIEF_SMTP_PASSWORD is not in the environment"
            )
        # RFC 2920 command pipelining, used whenever the server offers it.
        self._pipelining = False
        self._conn: smtplib.SMTP | None = None
        self._used_at = 0.0
        self.connects = 0

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    # -- connection --------------------------------------------------------

    def open(self) -> None:
        """Connect now, so a wrong host or password shows before the first message."""
        conn = self._connection()
        if isinstance(conn, _Refusal):
            raise conn.error()

    def check_credentials(self) -> str:
        """Connect, EHLO, STARTTLS and AUTH as a send would, then QUIT (``brief doctor``)."""
        self.open()
        self.close()
        how = f"logged in as {self.username!r}" if self.username else "no login configured"
        return f"{self._where} answered EHLO ({self.tls}), {how}"

    def _connection(self) -> smtplib.SMTP | _Refusal:
        if self._conn is not None:
            return self._conn
        conn: smtplib.SMTP | None = None
        try:
            if self.tls == "implicit":
                conn = smtplib.SMTP_SSL(
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
        except Exception as exc:  # noqa: BLE001 - every failure becomes a _Refusal below
            if conn is not None:
                conn.close()
            return self._refusal(exc)
        if conn.sock is not None:
            # The final dot goes in a write of its own after the body (``finish``): with
            # Nagle's algorithm it would wait for the ACK of the body's last segment,
            # which the server delays (40 ms on Linux), once per message.
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        self._pipelining = conn.has_extn("pipelining")
        self._used_at = time.monotonic()
        self.connects += 1
        return conn

    def _refusal(self, exc: Exception) -> _Refusal:
        """Why connecting failed, as the fate of the messages that were to go."""
        where = self._where
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            reply = Reply.parse(exc.smtp_code, exc.smtp_error)
            return _Refusal(
                Fate.SENDER,
                reply.code,
                f"login refused: {reply.text}",
                f"smtp: {where} refused the login for {self.username!r}: {reply} "
                "(check provider.smtp.username and BRIEF_SMTP_PASSWORD)",
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            # Not an outage: retrying will not make the certificate right.
            why = exc.verify_message or exc.reason
            return _Refusal(
                Fate.SENDER,
                "tls",
                f"certificate not trusted: {why}",
                f"smtp: {where} presented a certificate that is not trusted: {why} (check "
                "provider.smtp.host, or provider.smtp.ca_file for a private CA)",
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return _Refusal(Fate.SENDER, "unsupported", str(exc), f"smtp: {where}: {exc}")
        if isinstance(exc, smtplib.SMTPResponseException):
            reply = Reply.parse(exc.smtp_code, exc.smtp_error)
            fate = Fate.NOT_TAKEN if reply.number < 500 else Fate.SENDER
            return _Refusal(fate, reply.code, reply.text, f"smtp: {where} answered {reply}")
        if isinstance(exc, _DROPPED):
            return _Refusal(
                Fate.NOT_TAKEN,
                _lost(exc),
                f"cannot connect: {exc}",
                f"smtp: cannot connect to {where}: {exc}",
            )
        if isinstance(exc, smtplib.SMTPException):
            # e.g. "No suitable authentication method found": a setup that retrying won't fix
            return _Refusal(Fate.SENDER, "smtp", str(exc), f"smtp: {where}: {exc}")
        raise exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def _alive(self, conn: smtplib.SMTP) -> bool:
        """Whether an idle connection still answers (a NOOP costs one round trip)."""
        try:
            alive = conn.noop()[0] == 250
        except _DROPPED:
            return False
        self._used_at = time.monotonic()
        return alive

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
        """One SMTP transaction per message, on the worker's connection.

        Partial outcomes are kept: once a message has its answer, a failure further
        on makes the rest ``NOT_TAKEN`` or ``SENDER`` instead of raising. Only when no
        message has been answered yet does the failure raise (ProviderUnavailable or
        ProviderError), which the contract reads as the same fate for the whole batch.
        """
        results: list[Result] = []
        for i, msg in enumerate(messages):
            staged = self._stage(msg, with_dot=True)
            outcome = staged.outcome if staged.outcome is not None else self._end(staged)
            if isinstance(outcome, Result):
                results.append(outcome)
                continue
            if not results:
                raise outcome.error()
            return results + [outcome.result(m.key) for m in messages[i:]]
        return results

    # -- staged: everything but the final dot, then the dot ---------------------

    def stage(self, msg: OutgoingMessage) -> Staged:
        """Start ``msg``'s transaction and write its body, all but the final dot.

        The server cannot have the message until the dot (RFC 5321 §4.1.1.4: a
        connection closed before it aborts the transaction), so the send loop marks
        the row in flight while the server waits, and the commit costs no round trip.
        A refusal on the way is the Staged's ``outcome``; a refusal of the sender or
        an unreachable server raises, as ``push`` of one message does.
        """
        staged = self._stage(msg, with_dot=False)
        if isinstance(staged.outcome, _Refusal):
            raise staged.outcome.error()
        return staged

    def finish(self, staged: Staged) -> Result:
        """Write the final dot of a staged message and read the server's answer (or give
        the refusal met while staging)."""
        outcome = staged.outcome if staged.outcome is not None else self._end(staged)
        if isinstance(outcome, _Refusal):
            raise outcome.error()
        return outcome

    def abort(self, staged: Staged) -> None:
        """Leave a staged message unsent: without its dot the server drops it when the
        connection closes (a refused one needs nothing)."""
        if staged.outcome is None:
            self._drop()

    def _stage(self, msg: OutgoingMessage, *, with_dot: bool) -> Staged:
        reused = self._conn is not None
        if (
            self._conn is not None
            and time.monotonic() - self._used_at > self.idle_limit
            and not self._alive(self._conn)
        ):
            self._drop()
            reused = False
        conn = self._connection()
        if isinstance(conn, _Refusal):
            return Staged(msg, conn)
        staged, stale = self._begin(conn, msg, with_dot)
        if stale and reused:
            # The connection was dead before this transaction began (closed while idle,
            # sooner than idle_limit): nothing was handed over, so once more on a new one,
            # and the answer recorded is the server's, not "connection lost".
            conn = self._connection()
            if isinstance(conn, _Refusal):
                return Staged(msg, conn)
            staged, _ = self._begin(conn, msg, with_dot)
        return staged

    def _envelope(
        self, conn: smtplib.SMTP, msg: OutgoingMessage, replies: list[tuple[int, bytes]]
    ) -> None:
        """MAIL, RCPT and DATA, their replies (code, text) appended to ``replies`` up to
        the first refusal.

        With PIPELINING (RFC 2920) the three go in one write and the replies are read
        after it: one round trip instead of three. MAIL and RCPT are written with
        putcmd, not smtplib's mail()/rcpt(): both addresses were checked when the
        message was built, and smtplib's quoteaddr parses each one again with
        email.utils.parseaddr on every message (0.4 ms of CPU a message).
        """
        to = f"TO:<{msg.to_address}>"
        mail_from = (
            f"FROM:<{verp_address(self.return_path, msg.key)}>"
            if self.return_path
            else self._mail_from
        )
        if not self._pipelining:
            commands = (("mail", mail_from), ("rcpt", to), ("data", ""))
            for (cmd, args), ok in zip(commands, _OK, strict=True):
                conn.putcmd(cmd, args)
                replies.append(conn.getreply())
                if replies[-1][0] not in ok:
                    return
            return
        conn.send(f"MAIL {mail_from}\r\nRCPT {to}\r\nDATA\r\n")
        for _ in _OK:
            try:
                replies.append(conn.getreply())
            except _DROPPED:
                # A refusal may close the connection (421) before the replies after it.
                if any(code not in ok for (code, _), ok in zip(replies, _OK, strict=False)):
                    return
                raise

    def _begin(
        self, conn: smtplib.SMTP, msg: OutgoingMessage, with_dot: bool
    ) -> tuple[Staged, bool]:
        """The transaction up to the body (and its dot when ``with_dot``); also whether it
        failed at its first command on a connection that was already gone (dropped, or
        a 421 waiting in the socket)."""
        replies: list[tuple[int, bytes]] = []
        try:
            self._envelope(conn, msg, replies)
        except _DROPPED as exc:
            # The body was not written: nothing was handed over. Lost before any answer,
            # the connection was gone already.
            self._drop()
            return Staged(msg, self._lost_before(msg, exc)), not replies
        self._used_at = time.monotonic()
        for stage, (code, resp), ok in zip(_STAGES, replies, _OK, strict=False):
            if code not in ok:
                # Pipelined DATA accepted after a refusal (a server that should have said
                # 503/554) reads a body now: leave without one (no RSET then).
                open_ = None if replies[-1][0] == 354 else conn
                refused = self._refused(open_, msg, stage, Reply.parse(code, resp))
                return Staged(msg, refused), stage is Stage.MAIL and code == 421
        # Until the final dot is written the server cannot have accepted the message.
        body = _data(msg, self.signer)
        try:
            if with_dot:
                conn.send(body + b".\r\n")
            else:
                conn.send(body)
        except _DROPPED as exc:
            self._drop()
            return Staged(msg, self._lost_before(msg, exc)), False
        return Staged(msg, None, conn, dot_sent=with_dot), False

    def _end(self, staged: Staged) -> Result | _Refusal:
        """The final dot (unless sent with the body) and the server's answer to it."""
        msg, conn = staged.message, staged.conn
        assert conn is not None
        if not staged.dot_sent:
            try:
                conn.send(b".\r\n")
            except _DROPPED as exc:
                # The dot never left: the server cannot have the message.
                self._drop()
                return self._lost_before(msg, exc)
        try:
            code, resp = conn.getreply()
        except _DROPPED as exc:
            # Written in full: whether the server read the dot cannot be known from
            # here (a server dropping mid-DATA looks the same once the body is in the
            # socket buffers), so the honest answer is "unknown", never "retry".
            self._drop()
            return Result.unknown(
                msg.key,
                "connection lost after the message was sent, before the server's answer",
                _lost(exc),
            )
        self._used_at = time.monotonic()
        if code != 250:
            return self._refused(conn, msg, Stage.END, Reply.parse(code, resp))
        queued = re.search(r"queued as (\S+)", Reply.parse(code, resp).text, re.I)
        return Result.sent(msg.key, queued.group(1) if queued else msg.headers.get("Message-ID"))

    def _lost_before(self, msg: OutgoingMessage, exc: BaseException) -> Result:
        return Result.temporary(
            msg.key, f"connection lost before the message was sent ({exc})", _lost(exc)
        )

    def _refused(
        self, conn: smtplib.SMTP | None, msg: OutgoingMessage, stage: Stage, reply: Reply
    ) -> Result | _Refusal:
        if reply.number == 421 or conn is None:
            self._drop()  # the server is closing this connection (or it was dropped)
        else:
            try:
                conn.rset()
                self._used_at = time.monotonic()
            except _DROPPED:
                self._drop()
        result = judge(stage, reply, msg.key, msg.to_address)
        if result.fate is Fate.NOT_TAKEN:
            # Not taking mail at all for now: the rest of the batch would get the same.
            return _Refusal(
                Fate.NOT_TAKEN,
                result.code,
                result.reason,
                f"smtp: {self._where} answered {reply} to {stage.value}",
            )
        if result.fate is not Fate.SENDER:
            return result
        what = "the sender" if stage is Stage.MAIL else "to relay for"
        return _Refusal(
            Fate.SENDER,
            result.code,
            result.reason,
            f"smtp: {self._where} refuses {what} {self.envelope_from}: {result.label}",
        )
