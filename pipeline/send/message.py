"""Per-recipient MIME from an issue rendered once: the hot path of a send.

``MessageFactory`` builds the multipart/alternative skeleton once per issue:
headers shared by everyone, and each body part quoted-printable encoded in
static segments split at the placeholders. Per recipient, ``build`` encodes
only the substituted values (each on lines of its own, joined by QP soft line
breaks, so no line passes 76 octets) and joins bytes. No template rendering,
no MJML and no ``EmailMessage`` per recipient.
"""

from __future__ import annotations

import binascii
import hashlib
import html as htmlmod
import json
import re
import secrets
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.header import Header
from email.utils import formataddr, formatdate
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import AddressRefused, SendError
from pipeline.mail import PLACEHOLDERS, Content, OutgoingMessage
from pipeline.send.tracking import track
from pipeline.store.clicks import Link, click_token
from pipeline.store.tokens import preferences_token, unsubscribe_token

_json_string = json.encoder.encode_basestring  # type: ignore[attr-defined]

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
TEST_PREFIX = "[TEST] "

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ATEXT_ADDR = re.compile(r"^[\x21-\x7e]+@[A-Za-z0-9.-]+$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9 !#$%&'*+\-/=?^_`{|}~.]*$")


@dataclass(frozen=True)
class _Part:
    """One body part: QP-encoded static segments as one %-template, and the slots."""

    template: bytes  # b"seg%(name)bseg..." with literal % doubled: one C-level substitution
    # The same with each line that starts with "." doubled (RFC 5321 §4.5.2), for SMTP's
    # DATA: dot-stuffed once per issue instead of a regex over 40 KB per message.
    data_template: bytes
    slots: tuple[str, ...]  # placeholder names, in order
    pieces: tuple[str, ...]  # the static text, decoded (for OutgoingMessage.html/text)
    # The part as a JSON string literal (quotes included, UTF-8) in static pieces, a
    # slot between each two: an HTTP API's request body is joined from them (and the
    # escaped values) without building the part or copying it per recipient.
    json_pieces: tuple[bytes, ...]


# What a reader's mail is made of: the content, the templates and the assets. A change
# elsewhere in the repository (the code, the README) does not make the mail "dirty".
CONTENT_PATHS = ("glossary", "museum", "issues", "templates", "assets", "brief.toml")


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def content_commit(root: Path) -> str:
    """The git commit of the content at ``root``: ``<sha>``, ``<sha>-dirty`` when the
    content files differ from it (edited, staged or new and uncommitted), "unknown"
    outside a repository."""
    out = _git(root, "rev-parse", "HEAD")
    if out is None:
        return "unknown"
    commit = out.stdout.strip()
    if out.returncode != 0 or not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        return "unknown"
    status = _git(root, "status", "--porcelain", "--", *CONTENT_PATHS)
    if status is None or status.returncode != 0:
        return "unknown"
    return f"{commit}-dirty" if status.stdout.strip() else commit


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def qp_encode(text: str) -> bytes:
    """Quoted-printable UTF-8 with CRLF line ends, each line at most 76 octets."""
    if not text:
        return b""
    data = _normalise_newlines(text).encode("utf-8")
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).replace(b"\n", CRLF)


def _segment(text: str) -> bytes:
    """Encode a static piece so that the next piece may start at column 0."""
    enc = qp_encode(text)
    if enc and not enc.endswith(CRLF):
        enc += SOFT_BREAK
    return enc


def _split(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    by_marker = {v: k for k, v in PLACEHOLDERS.items()}
    pattern = re.compile("|".join(re.escape(m) for m in by_marker))
    pieces: list[str] = []
    slots: list[str] = []
    pos = 0
    for m in pattern.finditer(template):
        pieces.append(template[pos : m.start()])
        slots.append(by_marker[m.group(0)])
        pos = m.end()
    pieces.append(template[pos:])
    return tuple(pieces), tuple(slots)


def json_chars(text: str) -> bytes:
    """``text`` escaped as the inside of a JSON string (no quotes), UTF-8."""
    # The json module's own string escaper (C), as json.dumps(ensure_ascii=False) uses
    # it, without building a JSONEncoder per call.
    return _json_string(text)[1:-1].encode("utf-8")


def _slotted(segments: list[bytes], slots: tuple[str, ...]) -> bytes:
    out = [segments[0].replace(b"%", b"%%")]
    for slot, seg in zip(slots, segments[1:], strict=True):
        out.append(b"%(" + slot.encode("ascii") + b")b")
        out.append(seg.replace(b"%", b"%%"))
    return b"".join(out)


def _part(template: str) -> _Part:
    pieces, slots = _split(_normalise_newlines(template))
    # JSON escapes each character on its own, so the escaped pieces and values joined
    # are the escaped whole.
    escaped = [json_chars(p) for p in pieces]
    escaped[0] = b'"' + escaped[0]
    escaped[-1] += b'"'
    segments = [_segment(p) for p in pieces]
    return _Part(
        _slotted(segments, slots),
        _slotted([dot_stuff(seg) for seg in segments], slots),
        slots,
        pieces,
        tuple(escaped),
    )


def dot_stuff(data: bytes) -> bytes:
    """``data`` (CRLF lines, starting at a line's start) with every line that starts
    with "." given a second one, as SMTP's DATA needs (RFC 5321 §4.5.2)."""
    data = data.replace(b"\n.", b"\n..")
    return b"." + data if data.startswith(b".") else data


def display_name(name: str | None) -> str:
    """A display name safe for a header and a greeting: control characters become spaces."""
    if not name:
        return ""
    return " ".join(_CONTROL.sub(" ", name).split())


def check_address(address: str) -> str:
    """The address as it can go in a header (IDNA domain); AddressRefused otherwise."""
    local, at, domain = address.rpartition("@")
    if at and domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressRefused(f"address {address!r}: IDNA cannot encode the domain") from None
        address = f"{local}@{domain}"
    if not _ATEXT_ADDR.match(address) or len(address) > 320:
        raise AddressRefused(
            f"address {address!r} has spaces, line breaks or non-ASCII characters "
            "(SMTPUTF8 addresses are not supported)"
        )
    return address


def _encoded_word(text: str, header_name: str) -> str:
    """RFC 2047 words, folded with CRLF so every line stays short."""
    return Header(text, "utf-8", header_name=header_name).encode(linesep="\r\n")


def format_address(name: str | None, address: str, header_name: str = "To") -> str:
    """``Name <address>`` with the name quoted or RFC 2047 encoded as needed."""
    address = check_address(address)
    name = display_name(name)
    if not name:
        return address
    if name.isascii():
        if _PLAIN_NAME.match(name) and len(name) < 60:
            return f"{name} <{address}>"
        if len(name) < 60:
            return formataddr((name, address))
    return f"{_encoded_word(name, header_name)} <{address}>"


def _header_text(name: str, value: str) -> bytes:
    """One unstructured header, encoded when non-ASCII and folded when long."""
    value = display_name(value)
    if value.isascii() and len(name) + len(value) < 76:
        line = f"{name}: {value}"
    elif value.isascii():
        line = f"{name}: " + Header(value, "us-ascii", header_name=name).encode(linesep="\r\n")
    else:
        line = f"{name}: " + _encoded_word(value, name)
    return line.encode("ascii") + CRLF


def _values_for(values: Mapping[str, str], slots: frozenset[str]) -> None:
    missing = slots.difference(values)
    if missing:
        raise SendError(f"message values lack {', '.join(sorted(missing))}")


class _LazyMessage(OutgoingMessage):
    """An OutgoingMessage whose bytes and personalised parts are joined only when read.

    Outbox reads only ``raw``, SMTP only ``smtp_data`` (``raw`` dot-stuffed); the HTTP
    providers read ``html``/``text`` or, for
    a JSON request, ``json_part``, and never ``raw``: each is built on first use (and
    ``html``/``text``/``raw`` then cached), so a batch of 500 holds no MIME it never sends.
    """

    def __init__(self, *, factory: MessageFactory, **fields: Any):
        for k, v in fields.items():
            object.__setattr__(self, k, v)
        object.__setattr__(self, "_factory", factory)

    def __getattr__(self, attr: str) -> Any:
        # Called only for attributes not yet set: the lazy ones.
        f = self.__dict__["_factory"]
        if attr in ("html", "text"):
            part = f._html if attr == "html" else f._text
            vals = f._html_values(self.values) if attr == "html" else self.values
            value = _join_text(part, vals)
        elif attr == "raw":
            value = f._raw(self)
        elif attr == "smtp_data":
            value = f._raw(self, stuffed=True)
        else:
            raise AttributeError(attr)
        object.__setattr__(self, attr, value)
        return value

    def json_pieces(self, which: str) -> list[bytes]:
        """The personalised ``html`` or ``text`` part as a JSON string literal (UTF-8) in
        pieces to join: the part's static pieces, escaped once per issue, and this
        recipient's values escaped between them. Joined, what ``json.dumps`` gives for
        the part, without building it or escaping 40 KB per recipient."""
        f = self.__dict__["_factory"]
        if which == "html":
            part, vals = f._html, f._html_values(self.values)
        elif which == "text":
            part, vals = f._text, self.values
        else:
            raise ValueError(f"no part {which!r}")
        out = [part.json_pieces[0]]
        for slot, piece in zip(part.slots, part.json_pieces[1:], strict=True):
            out += (json_chars(vals[slot]), piece)
        return out

    def json_part(self, which: str) -> bytes:
        """``json_pieces`` joined: the part as one JSON string literal."""
        return b"".join(self.json_pieces(which))


def _join_text(part: _Part, values: Mapping[str, str]) -> str:
    out = [part.pieces[0]]
    for slot, piece in zip(part.slots, part.pieces[1:], strict=True):
        out.append(values[slot])
        out.append(piece)
    return "".join(out)


class MessageFactory:
    """Builds each recipient's message from one rendered issue by substitution."""

    def __init__(
        self,
        rendered: Any,
        settings: Settings,
        commit: str | None = None,
        *,
        list_name: str | None = None,
        transactional: bool = False,
    ):
        nl = settings.newsletter
        self.settings = settings
        self.domain = nl.domain
        self.base_url = nl.base_url
        self.commit = commit if commit is not None else content_commit(settings.root)
        self.list_name = list_name or nl.default_list
        self.issue_label = f"{int(rendered.issue_number):03d}"
        self._unsub_prefix = f"{self.base_url}/unsubscribe/"
        # A test copy or confirmation is no issue a reader leaves from: no attribution.
        self._issue_query = "" if transactional else issue_query(int(rendered.issue_number))
        # The mailto alternative only when a mailbox reads it ([bounces]).
        self._mailto_address = settings.bounces.unsubscribe_address
        # List mail only: a confirmation, a test copy or a sample records nothing, so its
        # links stay direct. The tracked links are static text with one slot each.
        self.links: tuple[Link, ...] = ()
        if not transactional:
            tracked = track(rendered, settings)
            rendered, self.links = tracked.rendered, tracked.links
        self.rendered = rendered
        self._html = _part(rendered.html)
        self._text = _part(rendered.text)
        self._slots = frozenset(self._html.slots + self._text.slots)
        self.transactional = transactional
        list_id = f"<{self.list_name}.{self.domain}>"
        common = {"X-Brief-Commit": self.commit, "X-Brief-Issue": self.issue_label}
        if not transactional:  # a confirmation or test copy is not list mail
            common = {"List-Id": f"{nl.name} {list_id}" if nl.name.isascii() else list_id, **common}
        self.content = Content(
            issue_number=int(rendered.issue_number),
            subject=rendered.subject,
            from_address=nl.from_address,
            from_name=nl.from_name,
            reply_to=nl.reply_to,
            html=rendered.html,
            text=rendered.text,
            headers=common,
        )
        self._boundary = "=_brief_" + secrets.token_hex(12)
        b = self._boundary.encode("ascii")
        head = b"".join(
            [
                b"From: " + format_address(nl.from_name, nl.from_address, "From").encode() + CRLF,
                b"Reply-To: " + format_address(None, nl.reply_to, "Reply-To").encode() + CRLF,
                _header_text("Subject", rendered.subject),
                b"MIME-Version: 1.0" + CRLF,
                *(_header_text(k, v) for k, v in common.items()),
                b'Content-Type: multipart/alternative; boundary="' + b + b'"' + CRLF,
            ]
        )
        self._head = head
        part_head = (
            b'Content-Type: text/%s; charset="utf-8"'
            + CRLF
            + b"Content-Transfer-Encoding: quoted-printable"
            + CRLF
            + CRLF
        )
        self._text_open = CRLF + b"--" + b + CRLF + part_head % b"plain"
        self._html_open = CRLF + b"--" + b + CRLF + part_head % b"html"
        self._close = CRLF + b"--" + b + b"--" + CRLF
        self._date_at = -1
        self._date = b""

    # -- per recipient -----------------------------------------------------

    def _now_header(self) -> bytes:
        now = int(time.time())
        if now != self._date_at:  # one formatdate a second, not one per message
            self._date = b"Date: " + formatdate(now, usegmt=True).encode() + CRLF
            self._date_at = now
        return self._date

    def _id_suffix(self, key: str) -> str:
        """The Message-ID's tail: derived from the delivery key, so every build of one
        delivery (a retry, a resume in another process) is the same message, and an
        idempotent provider sees the same request."""
        return hashlib.sha256(f"{self.domain}/{key}".encode()).hexdigest()[:12]

    @staticmethod
    def _html_values(values: Mapping[str, str]) -> dict[str, str]:
        return {k: htmlmod.escape(v, quote=True) for k, v in values.items()}

    def _mailto(self, unsubscribe_url: str) -> str | None:
        """The List-Unsubscribe mailto (subject "unsubscribe-<token>"), or None when no
        mailbox reads the address."""
        if not self._mailto_address:
            return None
        token = (
            # Without the link's "?i=NNN": the mailbox reads the token alone.
            unsubscribe_url[len(self._unsub_prefix) :].partition("?")[0]
            if unsubscribe_url.startswith(self._unsub_prefix)
            else ""
        )
        subject = f"unsubscribe-{token}" if token else "unsubscribe"
        return f"mailto:{self._mailto_address}?subject={subject}"

    def build(
        self, key: str, to_address: str, to_name: str | None, values: Mapping[str, str]
    ) -> OutgoingMessage:
        """One recipient's complete message: headers, then both parts with ``values`` in."""
        values = dict(values)
        if "name" in values:
            values["name"] = display_name(values["name"])
        _values_for(values, self._slots)
        to_address = check_address(to_address)
        to = format_address(to_name, to_address)
        message_id = f"<{key}.{self._id_suffix(key)}@{self.domain}>"
        headers = {"To": to, "Message-ID": message_id}
        unsub = values.get("unsubscribe_url", "")
        if not self.transactional:
            # Checked here, though the header is written only when ``raw`` is read: a
            # message that cannot be written must fail while it is built.
            if not unsub.startswith(("https://", "http://")) or not unsub.isascii():
                raise SendError("a list message needs an http(s) ASCII unsubscribe_url value")
            mailto = self._mailto(unsub)
            headers["List-Unsubscribe"] = f"<{unsub}>, <{mailto}>" if mailto else f"<{unsub}>"
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return _LazyMessage(
            factory=self,
            key=key,
            to_address=to_address,
            to_name=display_name(to_name) or None,
            content=self.content,
            values=values,
            headers=headers,
        )

    def _raw(self, msg: OutgoingMessage, *, stuffed: bool = False) -> bytes:
        """The complete RFC 5322 bytes of a message ``build`` made; ``stuffed``: with
        SMTP's dot-stuffing (only the parts' lines can start with "."; each value's
        segment, like each static one, starts at a line's start)."""
        values = msg.values
        encoded: dict[bytes, bytes] = {}
        html_encoded: dict[bytes, bytes] = {}
        for k, v in values.items():
            kb = k.encode("ascii")
            encoded[kb] = _segment(v)
            html_encoded[kb] = _segment(htmlmod.escape(v, quote=True))
            if stuffed:
                encoded[kb] = dot_stuff(encoded[kb])
                html_encoded[kb] = dot_stuff(html_encoded[kb])
        text, html = (
            (self._text.data_template, self._html.data_template)
            if stuffed
            else (self._text.template, self._html.template)
        )
        out = [
            b"To: " + msg.headers["To"].encode("ascii") + CRLF,
            self._now_header(),
            b"Message-ID: " + msg.headers["Message-ID"].encode("ascii") + CRLF,
        ]
        if not self.transactional:
            unsub = values["unsubscribe_url"]
            mailto = self._mailto(unsub)
            if mailto:
                # Folded after the comma: a long token must not push the line past 998.
                out.append(b"List-Unsubscribe: <" + unsub.encode("ascii") + b">," + CRLF)
                out.append(b" <" + mailto.encode("ascii") + b">" + CRLF)
            else:
                out.append(b"List-Unsubscribe: <" + unsub.encode("ascii") + b">" + CRLF)
            out.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" + CRLF)
        out += [
            self._head,
            self._text_open,
            text % encoded,
            self._html_open,
            html % html_encoded,
            self._close,
        ]
        return b"".join(out)

    def for_recipient(self, key: str, recipient: Any) -> OutgoingMessage:
        """Build from a store ``Recipient`` (email, name and link tokens)."""
        return self.build(
            key,
            recipient.email,
            recipient.name,
            recipient_values(
                self.settings, recipient, self.content.issue_number, self._issue_query
            ),
        )


def issue_query(issue_number: int | None) -> str:
    """The ``?i=NNN`` an issue's unsubscribe and preferences links carry, so an
    unsubscribe through them is attributed to that issue in its report. It is not
    signed: it only attributes that person's own unsubscribe (their token is the proof),
    so at worst someone misattributes their own leaving."""
    return f"?i={int(issue_number)}" if issue_number is not None else ""


def recipient_values(
    settings: Settings, recipient: Any, issue: int = 0, query: str = ""
) -> dict[str, str]:
    """The placeholder values of one store ``Recipient``: name and personal links (and
    the click token of ``issue``'s tracked links); ``query``: ``issue_query(n)`` for the
    links of issue n (attribution)."""
    base = settings.newsletter.base_url
    # Minted here, not through the Recipient's cached properties: on Python 3.11 every
    # cached_property holds one lock for all instances, so four send workers queued on
    # it for each token (6% of a batch send's samples, most of them waiting).
    r = recipient
    name = display_name(r.name)
    return {
        "name": name,
        "greeting": settings.newsletter.greet(name),
        "unsubscribe_url": f"{base}/unsubscribe/"
        + unsubscribe_token(r.token_key, r.membership_id, r.consent_seq)
        + query,
        "preferences_url": f"{base}/preferences/"
        + preferences_token(r.token_key, r.subscriber_id)
        + query,
        "click_token": click_token(r.token_key, issue, r.subscriber_id),
    }


def sample_values(settings: Settings, name: str = "") -> dict[str, str]:
    """Placeholder values for a copy that reaches no subscriber (test sends, samples)."""
    base = settings.newsletter.base_url
    return {
        "name": name,
        "greeting": settings.newsletter.greet(display_name(name)),
        # The site's pages on unsubscribing and preferences: a sample has no token, and a
        # made-up one (/unsubscribe/sample) was a 404 for the editor who clicked it.
        "unsubscribe_url": f"{base}/unsubscribe/",
        "preferences_url": f"{base}/preferences/",
        # Tracked links of a sample lead to the redirect but record nothing (no person).
        "click_token": "sample",
    }


def test_copy(rendered: Any) -> Any:
    """The rendered issue with ``[TEST]`` in front of its subject."""
    if rendered.subject.startswith(TEST_PREFIX):
        return rendered
    return replace(rendered, subject=TEST_PREFIX + rendered.subject)


test_copy.__test__ = False  # not a pytest test despite the name


def sample_message(rendered: Any, settings: Settings) -> bytes:
    """The complete .eml of one issue as a reader would get it (for ``brief render``), less
    the list headers: a sample reaches no subscriber, so it has nothing to unsubscribe from."""
    factory = MessageFactory(rendered, settings, transactional=True)
    msg = factory.build(
        f"issue-{factory.issue_label}.sample", "reader@example.com", None, sample_values(settings)
    )
    return msg.raw
