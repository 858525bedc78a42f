"""Validation and normalisation of what people type: addresses, names, attributes."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from typing import Any

from email_validator import EmailNotValidError, validate_email

from pipeline.errors import StoreError

MAX_NAME = 200
MAX_ATTRIBUTE_KEY = 64
MAX_ATTRIBUTE_VALUE = 1000
MAX_ATTRIBUTES = 50
MAX_SOURCE = 200

# C0/C1 controls, DEL, and the Unicode line/paragraph separators: any of them in a
# name could end up in a From/To header or split a CSV/log line.
CONTROL = _CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# RFC 5322 dot-atom: a strict subset of what email-validator accepts as a local part,
# so the fast path below never accepts anything the validator would refuse.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")
_MAX_ADDRESS = 254
try:
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES as _FOLDED
except ImportError:  # pragma: no cover - a future email-validator layout
    _FOLDED = ["postmaster", "abuse", "info", "support", "sales", "webmaster", "noc"]
_FOLDED_NAMES = frozenset(_FOLDED)


@functools.lru_cache(maxsize=65_536)
def _domain(domain: str) -> tuple[str, str]:
    """email-validator's (normalised, ASCII) form of a domain; cached, domains repeat a lot."""
    checked = validate_email("a@" + domain, check_deliverability=False)
    return checked.domain, checked.ascii_domain


def _fast(text: str) -> str | None:
    """The normalised address for the common case (plain ASCII local part), else None.

    Validating the domain dominates email-validator's cost and real lists share a few
    thousand domains, so it is validated once per domain; the local part needs no
    normalisation when it is a plain dot-atom. Anything unusual takes the full path.
    """
    local, at, domain = text.rpartition("@")
    if not at or not _DOT_ATOM.match(local) or local.lower() in _FOLDED_NAMES:
        return None
    try:
        norm_domain, ascii_domain = _domain(domain)
    except EmailNotValidError:
        return None  # the full path produces the message
    address = f"{local}@{norm_domain}"
    for form in (text, address, f"{local}@{ascii_domain}"):
        if len(form.encode("utf-8")) > _MAX_ADDRESS:
            return None
    return address


def normalise_email(raw: str) -> str:
    """Return the canonical form of an address (trimmed, domain lower-cased and IDNA-decoded).

    Raises ``StoreError`` with a readable reason when the syntax is invalid. No DNS.
    """
    if not isinstance(raw, str):
        raise StoreError("an email address must be text")
    text = raw.strip()
    if not text:
        raise StoreError("the email address is empty")
    if len(text) > 320:
        raise StoreError("the email address is too long (more than 320 characters)")
    fast = _fast(text)
    if fast is not None:
        return fast
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise StoreError(f"invalid email address {_printable(text)!r}: {exc}") from None
    return checked.normalized


def address_hash(email: str) -> str:
    """SHA-256 hex of the normalised address, case-folded; identity and suppressions use it.

    The stored address keeps the local part's case (it is the person's spelling), but
    ``Ann@x.org`` and ``ann@x.org`` are one person: nobody escapes a suppression by case.
    """
    return hash_normalised(normalise_email(email))


def hash_normalised(normalised: str) -> str:
    """``address_hash`` of an address already normalised (skips re-validation in bulk)."""
    return hashlib.sha256(normalised.lower().encode("utf-8")).hexdigest()


def normalise_name(raw: str | None) -> str | None:
    """A display name safe for headers: NFC, trimmed, no control characters, bounded length.

    Empty means no name. Refuses (``StoreError``) rather than silently rewriting.
    """
    if raw is None:
        return None
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        return None
    if _CONTROL.search(text):
        raise StoreError("the name contains a line break or control character; refused")
    if len(text) > MAX_NAME:
        raise StoreError(f"the name is longer than {MAX_NAME} characters; refused")
    return text


def clean_attributes(raw: dict[str, Any] | None) -> dict[str, str]:
    """Attributes as a flat ``{str: str}`` map, keys and values bounded; empty values dropped."""
    if not raw:
        return {}
    if len(raw) > MAX_ATTRIBUTES:
        raise StoreError(f"more than {MAX_ATTRIBUTES} attributes; refused")
    out: dict[str, str] = {}
    for key, value in raw.items():
        k = str(key).strip()
        if not k or len(k) > MAX_ATTRIBUTE_KEY or _CONTROL.search(k):
            raise StoreError(f"attribute name {_printable(k)!r} is empty, too long or has controls")
        if value is None:
            continue
        v = unicodedata.normalize("NFC", str(value)).strip()
        if not v:
            continue
        if len(v) > MAX_ATTRIBUTE_VALUE:
            raise StoreError(f"attribute {k!r} is longer than {MAX_ATTRIBUTE_VALUE} characters")
        if _CONTROL.search(v):
            raise StoreError(f"attribute {k!r} contains a line break or control character")
        out[k] = v
    return out


def clean_source(raw: str | None, default: str) -> str:
    """A consent source label: one line, bounded."""
    text = (raw or "").strip() or default
    if _CONTROL.search(text):
        raise StoreError("the consent source contains a line break or control character")
    return text[:MAX_SOURCE]


def _printable(text: str) -> str:
    """Text for an error message: controls escaped, long values cut."""
    shown = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return shown if len(shown) <= 80 else shown[:77] + "..."
