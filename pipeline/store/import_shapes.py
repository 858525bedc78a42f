"""What the columns of an import file mean: Brief's own export, other tools' exports, or
any sheet, recognised by its header row; ``--map column=field`` for the rest.

Each shape says which header names map to which field and how a row's status is read.
Sources for the other tools' headers are listed in tests/imports/SOURCES.md.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.errors import ImportRefused, StoreError


class Field(enum.StrEnum):
    """What one column holds."""

    EMAIL = "email"
    NAME = "name"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    STATUS = "status"
    LIST = "list"
    CONSENT_SOURCE = "consent_source"
    CONSENT_AT = "consent_at"
    CONFIRMED_AT = "confirmed_at"
    UNSUBSCRIBED_AT = "unsubscribed_at"
    BOUNCED_AT = "bounced_at"
    ATTRIBUTES = "attributes"  # a JSON object, merged into the attributes
    TAGS = "tags"  # kept as the attribute "tags"
    EMAILS_OFF = "emails_off"  # "true" means the person turned e-mails off (Substack)
    EMAILS_ON = "emails_on"  # "false" means the person turned e-mails off (Ghost)
    ATTRIBUTE = "attribute"  # kept as an attribute under the column's own name
    IGNORE = "ignore"  # dropped (system columns, IP addresses, payment ids)


class RowStatus(enum.StrEnum):
    """What a row says about the person, before the safe-direction rule is applied."""

    SUBSCRIBED = "subscribed"  # confirmed where the import is --confirmed, else pending
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"
    LEFT_ALL = "left_all"  # unsubscribed from everything (suppressed as "unsubscribed")
    BOUNCED = "bounced"  # suppressed as a hard bounce
    COMPLAINED = "complained"  # suppressed as a complaint


# Status words of every tool we know, lower-cased. A word not here refuses the row:
# a status is never guessed.
STATUS_WORDS: dict[str, RowStatus] = {
    # Brief
    "confirmed": RowStatus.SUBSCRIBED,
    "pending": RowStatus.PENDING,
    "unsubscribed": RowStatus.UNSUBSCRIBED,
    # Mailchimp, generic sheets
    "subscribed": RowStatus.SUBSCRIBED,
    "active": RowStatus.SUBSCRIBED,
    "cleaned": RowStatus.BOUNCED,
    "bounced": RowStatus.BOUNCED,
    "complained": RowStatus.COMPLAINED,
    "spam": RowStatus.COMPLAINED,
    "unconfirmed": RowStatus.PENDING,
    "inactive": RowStatus.UNSUBSCRIBED,
    # listmonk (models/subscribers.go)
    "enabled": RowStatus.SUBSCRIBED,
    "disabled": RowStatus.UNSUBSCRIBED,
    "blocklisted": RowStatus.LEFT_ALL,
    # Buttondown (subscriber_type)
    "regular": RowStatus.SUBSCRIBED,
    "premium": RowStatus.SUBSCRIBED,
    "trialed": RowStatus.SUBSCRIBED,
    "unpaid": RowStatus.SUBSCRIBED,
    "gifted": RowStatus.SUBSCRIBED,
    "churning": RowStatus.SUBSCRIBED,
    "paused": RowStatus.SUBSCRIBED,
    "unactivated": RowStatus.PENDING,
    "removed": RowStatus.UNSUBSCRIBED,
    "undeliverable": RowStatus.BOUNCED,
}

FIELD_NAMES = tuple(f.value for f in Field)


@dataclass(frozen=True)
class Shape:
    """One known export layout: recognised when every ``signature`` header is present."""

    name: str
    signature: frozenset[str]
    columns: Mapping[str, Field]
    # Columns not listed: an attribute (a tool's custom fields) or ignored.
    others: Field = Field.ATTRIBUTE


def _names(*names: str) -> frozenset[str]:
    return frozenset(names)


_GENERIC = {
    "email": Field.EMAIL,
    "e-mail": Field.EMAIL,
    "email address": Field.EMAIL,
    "email_address": Field.EMAIL,
    "mail": Field.EMAIL,
    "name": Field.NAME,
    "full name": Field.NAME,
    "full_name": Field.NAME,
    "first name": Field.FIRST_NAME,
    "first_name": Field.FIRST_NAME,
    "firstname": Field.FIRST_NAME,
    "last name": Field.LAST_NAME,
    "last_name": Field.LAST_NAME,
    "lastname": Field.LAST_NAME,
    "status": Field.STATUS,
    "list": Field.LIST,
    "consent_source": Field.CONSENT_SOURCE,
    "consent_at": Field.CONSENT_AT,
    "subscribed_at": Field.CONSENT_AT,
    "created_at": Field.CONSENT_AT,
    "signup_date": Field.CONSENT_AT,
    "confirmed_at": Field.CONFIRMED_AT,
    "unsubscribed_at": Field.UNSUBSCRIBED_AT,
    "attributes": Field.ATTRIBUTES,
    "tags": Field.TAGS,
}

SHAPES = (
    Shape(
        "Brief export",
        _names("email", "list", "status", "consent_source", "consent_at"),
        {
            "email": Field.EMAIL,
            "name": Field.NAME,
            "list": Field.LIST,
            "status": Field.STATUS,
            "consent_source": Field.CONSENT_SOURCE,
            "consent_at": Field.CONSENT_AT,
            "confirmed_at": Field.CONFIRMED_AT,
            "unsubscribed_at": Field.UNSUBSCRIBED_AT,
            "attributes": Field.ATTRIBUTES,
        },
    ),
    # One file per status (subscribed / unsubscribed / cleaned); the status is read from
    # UNSUB_TIME and CLEAN_TIME. Merge fields (Company, ZIP Code…) stay attributes.
    Shape(
        "Mailchimp",
        _names("email address", "member_rating", "optin_time"),
        {
            "email address": Field.EMAIL,
            "first name": Field.FIRST_NAME,
            "last name": Field.LAST_NAME,
            "optin_time": Field.CONSENT_AT,
            "confirm_time": Field.CONFIRMED_AT,
            "unsub_time": Field.UNSUBSCRIBED_AT,
            "clean_time": Field.BOUNCED_AT,
            "tags": Field.TAGS,
            "notes": Field.ATTRIBUTE,
            **{
                c: Field.IGNORE
                for c in (
                    "member_rating optin_ip confirm_ip latitude longitude gmtoff dstoff "
                    "timezone cc region last_changed leid euid unsub_campaign_title "
                    "unsub_campaign_id unsub_reason unsub_reason_other clean_campaign_title "
                    "clean_campaign_id"
                ).split()
            },
        },
    ),
    Shape(
        "Substack",
        _names("email", "email_disabled"),
        {
            "email": Field.EMAIL,
            "created_at": Field.CONSENT_AT,
            "email_disabled": Field.EMAILS_OFF,
            "type": Field.ATTRIBUTE,
            "plan": Field.ATTRIBUTE,
        },
        others=Field.IGNORE,  # expiry, Stripe ids, active_subscription: payment state
    ),
    Shape(
        "Ghost",
        _names("email", "subscribed_to_emails", "complimentary_plan"),
        {
            "email": Field.EMAIL,
            "name": Field.NAME,
            "note": Field.ATTRIBUTE,
            "subscribed_to_emails": Field.EMAILS_ON,
            "complimentary_plan": Field.ATTRIBUTE,
            "created_at": Field.CONSENT_AT,
            "deleted_at": Field.UNSUBSCRIBED_AT,
            "labels": Field.TAGS,
            "tiers": Field.ATTRIBUTE,
            "products": Field.ATTRIBUTE,
        },
        others=Field.IGNORE,  # id, stripe_customer_id
    ),
    Shape(
        "listmonk",
        _names("uuid", "email", "name", "attributes", "status", "created_at"),
        {
            "email": Field.EMAIL,
            "name": Field.NAME,
            "attributes": Field.ATTRIBUTES,
            "status": Field.STATUS,
            "created_at": Field.CONSENT_AT,
        },
        others=Field.IGNORE,  # uuid, updated_at
    ),
    Shape(
        "Buttondown",
        _names("subscriber_type", "creation_date"),
        {
            "email": Field.EMAIL,
            "email_address": Field.EMAIL,
            "notes": Field.ATTRIBUTE,
            "metadata": Field.ATTRIBUTES,
            "tags": Field.TAGS,
            "creation_date": Field.CONSENT_AT,
            "subscriber_type": Field.STATUS,
            "unsubscription_date": Field.UNSUBSCRIBED_AT,
        },
        others=Field.IGNORE,  # id, secondary_id, referrer and UTM columns, IP address
    ),
)
GENERIC = Shape("generic", frozenset(), _GENERIC)


_MULTI = frozenset({Field.ATTRIBUTE, Field.ATTRIBUTES, Field.TAGS, Field.IGNORE})


@dataclass(frozen=True)
class Layout:
    """Which field each column of a file holds, and the shape that said so."""

    mapping: str
    fields: tuple[tuple[int, Field, str], ...]  # (column, field, header as written)
    width: int

    @functools.cached_property
    def singles(self) -> tuple[tuple[Field, int], ...]:
        """(field, column) of the single-valued fields, the first column of each."""
        seen: dict[Field, int] = {}
        for i, f, _ in self.fields:
            if f not in _MULTI:
                seen.setdefault(f, i)
        return tuple(seen.items())

    @functools.cached_property
    def has_attributes(self) -> bool:
        """Whether any column feeds the attributes."""
        return any(f in _MULTI and f is not Field.IGNORE for _, f, _ in self.fields)


def parse_map(pairs: Mapping[str, str] | None) -> dict[str, Field]:
    """``--map`` pairs (header → field name) checked; header keys are compared lower-case."""
    out: dict[str, Field] = {}
    for column, field in (pairs or {}).items():
        name = field.strip().lower()
        if name not in FIELD_NAMES:
            raise ImportRefused(
                f"--map {column}={field}: unknown field {name!r}; one of {', '.join(FIELD_NAMES)}"
            )
        out[column.strip().lower()] = Field(name)
    return out


def layout(header: list[str], overrides: Mapping[str, str] | None = None) -> Layout | None:
    """Recognise the header's shape and map every column; None when no column holds the
    email address (the caller may try another delimiter)."""
    names = [h.strip().lower() for h in header]
    if any(not n for n in names):
        raise ImportRefused("the header row has an empty column name")
    if len(set(names)) != len(names):
        raise ImportRefused("the header row names a column twice")
    mapped = parse_map(overrides)
    if any(column not in names for column in mapped):
        return None
    present = set(names)
    shape = next((s for s in SHAPES if s.signature <= present), GENERIC)
    fields = []
    for i, name in enumerate(names):
        if name in mapped:
            field = mapped[name]
        elif name in shape.columns:
            field = shape.columns[name]
        elif shape is not GENERIC and name in _GENERIC and _GENERIC[name] is Field.EMAIL:
            field = Field.EMAIL
        else:
            field = shape.others
        fields.append((i, field, header[i].strip()))
    # One email column: the first; a second one is kept as an attribute.
    emails = [i for i, f, _ in fields if f is Field.EMAIL]
    if not emails:
        return None
    fields = [
        (i, Field.ATTRIBUTE if f is Field.EMAIL and i != emails[0] else f, h) for i, f, h in fields
    ]
    return Layout(shape.name + (" + --map" if mapped else ""), tuple(fields), len(names))


def unknown_mapped(header: list[str], overrides: Mapping[str, str] | None) -> list[str]:
    """The ``--map`` columns the header row does not have."""
    names = {h.strip().lower() for h in header}
    return [c for c in (overrides or {}) if c.strip().lower() not in names]


_GO_TIME = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) ([+-]\d{4})(?: [A-Z]{2,5})?(?: m=[+-][\d.]+)?"
)
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
CLOCK_SKEW = timedelta(minutes=5)


def parse_time(raw: str) -> datetime | None:
    """A timestamp as the tools write them, aware UTC; None when unreadable.

    ISO 8601 with ``Z`` or an offset, ``YYYY-MM-DD HH:MM:SS`` (Mailchimp), a bare date,
    and Go's ``Time.String()`` (listmonk). A time without a zone is taken as UTC (the
    tools above write UTC)."""
    text = raw.strip()
    if not text:
        return None
    go = _GO_TIME.fullmatch(text)
    if go:
        text = f"{go.group(1)}{go.group(2)}"
        for fmt in ("%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z"):
            try:
                return datetime.strptime(text, fmt).astimezone(UTC)
            except ValueError:
                continue
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def plausible(value: datetime | None, now: datetime) -> bool:
    """A consent time worth keeping: after 1990 and not in the future."""
    return value is not None and EARLIEST <= value <= now + CLOCK_SKEW


def read_status(cells: Mapping[Field, str]) -> RowStatus:
    """A row's status from its status column and the shape's flag and time columns;
    ``StoreError`` for a status word nobody defined."""
    status = RowStatus.SUBSCRIBED
    word = cells.get(Field.STATUS, "").strip().lower()
    if word:
        if word not in STATUS_WORDS:
            raise StoreError(
                f"unknown status {word!r}; refused (--map COLUMN=ignore imports without it)"
            )
        status = STATUS_WORDS[word]
    if cells.get(Field.EMAILS_OFF, "").strip().lower() == "true":
        status = _safer(status, RowStatus.UNSUBSCRIBED)
    if cells.get(Field.EMAILS_ON, "").strip().lower() == "false":
        status = _safer(status, RowStatus.UNSUBSCRIBED)
    if cells.get(Field.UNSUBSCRIBED_AT, "").strip() and status in (
        RowStatus.SUBSCRIBED,
        RowStatus.PENDING,
    ):
        status = RowStatus.UNSUBSCRIBED  # Mailchimp's unsubscribed file, Ghost's deleted_at
    if cells.get(Field.BOUNCED_AT, "").strip():
        status = _safer(status, RowStatus.BOUNCED)
    return status


_ORDER = (
    RowStatus.SUBSCRIBED,
    RowStatus.PENDING,
    RowStatus.UNSUBSCRIBED,
    RowStatus.BOUNCED,
    RowStatus.COMPLAINED,
    RowStatus.LEFT_ALL,
)


def _safer(a: RowStatus, b: RowStatus) -> RowStatus:
    return max(a, b, key=_ORDER.index)


def tags_text(raw: str) -> str:
    """Tags as one readable string: Mailchimp quotes each tag (``"A","B"``), others list
    them with commas or as a JSON array."""
    text = raw.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if isinstance(items, list):
            return ",".join(str(i).strip() for i in items if str(i).strip())
    return ",".join(part.strip().strip('"').strip() for part in text.split('","') if part.strip())
