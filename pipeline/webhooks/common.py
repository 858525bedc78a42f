"""What every webhook scheme shares: the event shape, the two refusals, freshness."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# Older signed timestamps are refused: a captured request cannot be replayed later.
REPLAY_WINDOW = timedelta(minutes=5)
KINDS = ("hard_bounce", "soft_bounce", "complaint")
_ADDRESS = re.compile(r"\S+@\S+")


class Unverified(Exception):
    """The call did not prove it comes from the provider (answered 401, nothing changed)."""


class BadPayload(Exception):
    """A verified call whose body is not what the provider documents (answered 400)."""


@dataclass(frozen=True)
class Event:
    """One bounce or complaint for one address, with the provider's id for de-duplication."""

    provider: str
    event_id: str
    kind: str
    email: str
    detail: str = ""
    delivery_key: str | None = None  # the send's delivery key, when the provider echoes it


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


def load_json(body: bytes) -> Any:
    """The body as JSON, or BadPayload."""
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadPayload("the body is not JSON") from None


def scrub(text: object, limit: int = 200) -> str:
    """A provider's diagnostic text, safe for the event log: no addresses, one short line."""
    line = " ".join(str(text or "").split())
    return _ADDRESS.sub("<address>", line)[:limit]
