"""What every webhook scheme shares: the event shape, the two refusals, freshness."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.store.normalise import CONTROL

# Older signed timestamps are refused: a captured request cannot be replayed later.
REPLAY_WINDOW = timedelta(minutes=5)
KINDS = ("hard_bounce", "soft_bounce", "complaint")
_ADDRESS = re.compile(r"\S+@\S+")
# No provider nests its payload more than a handful of levels; 5,000 would exhaust the
# parser's recursion (a 500 and a traceback) and costs every walk over it.
MAX_DEPTH = 32


class Unverified(Exception):
    """The call did not prove it comes from the provider (answered 401, nothing changed)."""


class BadPayload(Exception):
    """A verified call whose body is not what the provider documents (answered 400)."""


@dataclass(frozen=True)
class Event:
    """One bounce or complaint for one address, with the provider's id for de-duplication.

    Every text in it came from outside; it is cleaned here, once, on its way to the store
    (PostgreSQL refuses NUL, and control characters have no business in a log line).
    """

    provider: str
    event_id: str
    kind: str
    email: str
    detail: str = ""
    delivery_key: str | None = None  # the send's delivery key, when the provider echoes it
    # The issue the bounced/complained message was, once known (attribution in reports).
    issue_number: int | None = None
    # The provider's id of the bounced message (deliveries.provider_id), and its
    # Message-ID when the provider echoes it: how the issue is found without a key.
    provider_id: str | None = None
    message_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("event_id", "email", "detail"):
            object.__setattr__(self, name, clean_text(getattr(self, name)))
        for name in ("provider_id", "message_id"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, clean_text(getattr(self, name))[:300])


def check_fresh(when: datetime, now: datetime) -> None:
    """Refuse a signed timestamp outside the replay window (either side, for clock skew)."""
    if abs(now - when) > REPLAY_WINDOW:
        raise Unverified("the signed timestamp is outside the replay window")


def unix_time(text: str | None) -> datetime:
    """A Unix-seconds header value as an aware datetime, or Unverified."""
    try:
        return datetime.fromtimestamp(int(str(text).strip()), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise Unverified("missing or malformed timestamp") from None


def clean_text(text: object) -> str:
    """Text from outside as the store may keep it: control characters (NUL included) and
    line separators become spaces. The one cleaning every webhook and form value passes."""
    return CONTROL.sub(" ", str(text or ""))


def load_json(body: bytes) -> Any:
    """The body as JSON no deeper than ``MAX_DEPTH``, or BadPayload."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BadPayload("the body is not JSON") from None
    _check_depth(data)
    return data


def _check_depth(data: Any) -> None:
    """Walk without recursion so a deep document costs a loop, not the stack."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadPayload(f"the JSON is nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def scrub(text: object, limit: int = 200) -> str:
    """A provider's diagnostic text, safe for the event log: no addresses, one short line."""
    line = " ".join(clean_text(text).split())
    return _ADDRESS.sub("<address>", line)[:limit]
