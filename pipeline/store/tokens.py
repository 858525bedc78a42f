"""Link tokens for confirm, unsubscribe and preferences pages.

A token is ``<kind><id>.<seq>.<mac>``: ``kind`` is ``c`` (confirm a membership),
``u`` (unsubscribe from one list), ``a`` (unsubscribe from everything) or ``p``
(preferences); ``id`` is the membership or subscriber id; ``seq`` is the consent
number the link was minted for; ``mac`` is 144 bits of HMAC-SHA256 over the rest,
keyed with the subscriber's own random ``token_key`` kept in the database. So no
secret is needed in the environment, links never expire, forging one needs the
database, and comparison is constant-time. A link minted for an earlier consent
still resolves but says ``stale=True`` so the page asks before acting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from pipeline.errors import TokenError
from pipeline.store.db import reading
from pipeline.store.schema import lists, memberships, subscribers

_TOKEN = re.compile(r"^([cuap])([1-9][0-9]{0,17})\.([0-9]{1,9})\.([A-Za-z0-9_-]{24})$")
PURPOSES = {"confirm": "c", "unsubscribe": "ua", "preferences": "p"}
# Membership and subscriber ids are INTEGER columns: a larger id cannot exist, and
# PostgreSQL refuses to compare one ("integer out of range") instead of finding nothing.
MAX_ID = 2**31 - 1
_INVALID = "this link is not valid (it may be mistyped, forged, or the person was erased)"


def new_token_key() -> str:
    """A fresh random per-subscriber key."""
    return secrets.token_urlsafe(32)


def _mac(key: str, kind: str, ident: int, seq: int) -> str:
    digest = hmac.new(key.encode(), f"{kind}{ident}.{seq}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode("ascii")


def _make(key: str, kind: str, ident: int, seq: int) -> str:
    return f"{kind}{ident}.{seq}.{_mac(key, kind, ident, seq)}"


def confirm_token(token_key: str, membership_id: int, consent_seq: int) -> str:
    """The token for ``/confirm/{token}`` of one membership's current consent."""
    return _make(token_key, "c", membership_id, consent_seq)


def unsubscribe_token(token_key: str, membership_id: int, consent_seq: int) -> str:
    """The token for ``/unsubscribe/{token}`` from one list."""
    return _make(token_key, "u", membership_id, consent_seq)


def unsubscribe_all_token(token_key: str, subscriber_id: int, consent_seq: int) -> str:
    """The token for ``/unsubscribe/{token}`` from every list."""
    return _make(token_key, "a", subscriber_id, consent_seq)


def preferences_token(token_key: str, subscriber_id: int) -> str:
    """The token for ``/preferences/{token}``; never stale."""
    return _make(token_key, "p", subscriber_id, 0)


@dataclass(frozen=True)
class TokenTarget:
    """What a valid token points at.

    ``scope`` is "list" (one membership) or "all"/"subscriber" (the person).
    ``stale`` means the link predates the person's latest consent (or, for a
    confirm link, that the membership moved on): ask the person before acting.
    """

    purpose: str
    scope: str
    subscriber_id: int
    email: str
    name: str | None
    membership_id: int | None
    list_id: int | None
    list_name: str | None
    status: str | None
    stale: bool
    token_seq: int
    # The list's title for people ("" when it has none); None for a person-wide token.
    list_title: str | None = None


def parse(token: str) -> tuple[str, int, int, str]:
    """Split a token into (kind, id, seq, mac) or raise ``TokenError``."""
    match = _TOKEN.match(token or "")
    if not match:
        raise TokenError(_INVALID)
    kind, ident, seq, mac = match.groups()
    if int(ident) > MAX_ID or int(seq) > MAX_ID:
        raise TokenError(_INVALID)
    return kind, int(ident), int(seq), mac


def resolve(engine: Engine, token: str, purpose: str) -> TokenTarget:
    """Check ``token`` for ``purpose`` ("confirm", "unsubscribe", "preferences").

    Raises ``TokenError`` when malformed, forged, for another purpose, or for an
    erased person; returns the target, flagged ``stale`` when outdated.
    """
    with reading(engine) as conn:
        return resolve_conn(conn, token, purpose)


def resolve_conn(conn: Connection, token: str, purpose: str) -> TokenTarget:
    """``resolve`` inside an existing connection/transaction."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    kind, ident, seq, mac = parse(token)
    if kind not in PURPOSES[purpose]:
        raise TokenError(f"this link is not a {purpose} link")
    s, m, lst = subscribers, memberships, lists
    if kind in "cu":
        row = conn.execute(
            sa.select(
                s.c.id,
                s.c.email,
                s.c.name,
                s.c.token_key,
                m.c.id.label("mid"),
                m.c.consent_seq,
                m.c.status,
                lst.c.id.label("lid"),
                lst.c.name.label("lname"),
                lst.c.title.label("ltitle"),
            )
            .select_from(m.join(s, s.c.id == m.c.subscriber_id).join(lst, lst.c.id == m.c.list_id))
            .where(m.c.id == ident)
        ).one_or_none()
    else:
        row = conn.execute(
            sa.select(s.c.id, s.c.email, s.c.name, s.c.token_key, s.c.consent_seq).where(
                s.c.id == ident
            )
        ).one_or_none()
    # Compute a MAC even when the row is missing so timing does not reveal which ids exist.
    key = row.token_key if row is not None else "\0missing"
    if not hmac.compare_digest(_mac(key, kind, ident, seq), mac) or row is None:
        raise TokenError(_INVALID)
    if kind == "c":
        stale = seq != row.consent_seq or row.status == "unsubscribed"
    elif kind in "ua":
        stale = seq < row.consent_seq
    else:
        stale = False
    return TokenTarget(
        purpose=purpose,
        scope={"c": "list", "u": "list", "a": "all", "p": "subscriber"}[kind],
        subscriber_id=row.id,
        email=row.email,
        name=row.name,
        membership_id=row.mid if kind in "cu" else None,
        list_id=row.lid if kind in "cu" else None,
        list_name=row.lname if kind in "cu" else None,
        status=row.status if kind in "cu" else None,
        stale=stale,
        token_seq=seq,
        list_title=row.ltitle if kind in "cu" else None,
    )
