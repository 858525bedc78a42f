"""``/c/`` (a tracked link) and ``/o/`` (the open pixel): answer at once, record later.

The handler answers from a cache of the issues' links (302 to the recorded URL, never to
anything the request carries: no open redirect) and puts the click on a queue; the
``ClickRecorder`` writes the queue in batches, off the request path, every
``FLUSH_EVERY`` seconds or when ``FLUSH_ROWS`` wait: it checks each token (a tampered or
unknown one records nothing, but its reader was still sent on), classes the click
(``scanners``) and inserts the batch in one transaction.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from pipeline.errors import BriefError
from pipeline.store import clicks as store_clicks
from pipeline.store.db import transaction
from pipeline.web.public import scanners
from pipeline.web.public.context import state_of

log = logging.getLogger("brief.web")

FLUSH_EVERY = 0.5
FLUSH_ROWS = 500
# Held while the store is unreachable; beyond this the oldest clicks are dropped (logged).
MAX_PENDING = 100_000

_CLICK = re.compile(r"^([1-9][0-9]{0,8})\.([1-9][0-9]{0,8})(?:\.(.*))?$")
_OPEN = re.compile(r"^([1-9][0-9]{0,8})\.(.*?)(?:\.gif)?$")
# The smallest transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"cache-control": "no-store, private"}


@dataclass(frozen=True)
class RawHit:
    """A click as the request showed it, before its token is checked."""

    issue_number: int
    link_id: int | None
    kind: str
    subscriber_id: int
    mac: str
    at: datetime
    method: str
    headers: tuple[tuple[str, str], ...]
    user_agent: str
    network: str | None


class ClickRecorder:
    """The queue of clicks and the link cache of one app (no globals)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.pending: collections.deque[RawHit] = collections.deque()
        self._targets: dict[tuple[int, int], str] = {}
        self._flushing = threading.Lock()
        self.wake: asyncio.Event | None = None

    async def target(self, issue: int, link_id: int) -> str | None:
        """Where a link goes: from the cache, else the store (links never change)."""
        key = (issue, link_id)
        url = self._targets.get(key)
        if url is None:
            url = await run_in_threadpool(store_clicks.link_url, self.engine, issue, link_id)
            if url is not None:
                self._targets[key] = url
        return url

    def add(self, hit: RawHit) -> None:
        """Queue a click; wake the flusher when a batch is full."""
        if len(self.pending) >= MAX_PENDING:
            self.pending.popleft()
            log.error("click queue full: the oldest click was dropped")
        self.pending.append(hit)
        if self.wake is not None and len(self.pending) >= FLUSH_ROWS:
            self.wake.set()

    def flush(self) -> int:
        """Check, class and write what is queued; returns how many rows were written."""
        with self._flushing:
            batch: list[RawHit] = []
            while self.pending:
                batch.append(self.pending.popleft())
            if not batch:
                return 0
            try:
                return self._write(batch)
            except BriefError as exc:
                # Nothing lost: the batch goes back to the front for the next round.
                self.pending.extendleft(reversed(batch))
                log.error("clicks not recorded this round: %s", exc)
                return 0

    def _write(self, batch: list[RawHit]) -> int:
        with transaction(self.engine) as conn:
            good = store_clicks.verified_subscribers(
                conn, ((h.issue_number, h.subscriber_id, h.mac) for h in batch)
            )
            batch = [h for h in batch if (h.issue_number, h.subscriber_id, h.mac) in good]
            sent = store_clicks.sent_times(conn, ((h.issue_number, h.subscriber_id) for h in batch))
            hits = []
            for h in batch:
                reasons = scanners.classify(
                    kind=h.kind,
                    method=h.method,
                    headers=dict(h.headers),
                    user_agent=h.user_agent,
                    network=h.network,
                    at=h.at,
                    sent_at=sent.get((h.issue_number, h.subscriber_id)),
                )
                hits.append(
                    store_clicks.Hit(
                        h.issue_number,
                        h.link_id,
                        h.kind,
                        h.subscriber_id,
                        h.at,
                        bool(reasons),
                        scanners.join_reasons(reasons),
                        h.network,
                    )
                )
            store_clicks.insert_hits(conn, hits)
            self._bursts(conn, [h for h in hits if h.kind == "click"])
        return len(hits)

    def _bursts(self, conn, hits: list[store_clicks.Hit]) -> None:
        """Re-class one person's clicks on every link within the burst window (one query
        per issue in the batch, and only for people who clicked as many links)."""
        by_issue: dict[int, dict[int, datetime]] = {}
        for h in hits:
            first = by_issue.setdefault(h.issue_number, {})
            first[h.subscriber_id] = min(first.get(h.subscriber_id, h.at), h.at)
        totals = store_clicks.link_totals(conn, by_issue)
        for issue, people in by_issue.items():
            if totals.get(issue, 0) < 2:
                continue
            since = min(people.values()) - scanners.BURST
            found_rows = store_clicks.recent_clicks(conn, issue, people, since)
            marks: dict[int, str] = {}
            for rows in found_rows.values():
                found = scanners.burst([(r[0], r[1], r[2]) for r in rows], totals[issue])
                marks.update(
                    {r[0]: scanners.join_reasons(r[3], ["burst"]) for r in rows if r[0] in found}
                )
            store_clicks.mark_machine(conn, marks)

    async def run(self) -> None:
        """Flush every FLUSH_EVERY seconds or when a batch is full, until cancelled."""
        self.wake = asyncio.Event()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), FLUSH_EVERY)
                self.wake.clear()
                try:
                    await run_in_threadpool(self.flush)
                except Exception as exc:  # noqa: BLE001 - the recorder must outlive a bad round
                    log.error("clicks not recorded this round: %s: %s", type(exc).__name__, exc)
        finally:
            self.wake = None
            # What is still queued at shutdown is written, not lost.
            await run_in_threadpool(self.flush)


def _hit(request: Request, issue: int, link_id: int | None, kind: str, token: str) -> RawHit | None:
    parsed = store_clicks.parse_click_token(token)
    if parsed is None:
        return None
    s = state_of(request)
    h = request.headers
    return RawHit(
        issue_number=issue,
        link_id=link_id,
        kind=kind,
        subscriber_id=parsed[0],
        mac=parsed[1],
        at=s.now(),
        method=request.method,
        headers=tuple(
            (name, h[name])
            for name in ("purpose", "sec-purpose", "x-purpose", "x-moz")
            if name in h
        ),
        user_agent=h.get("user-agent", "")[:300],
        network=scanners.truncate(request.client.host if request.client else None),
    )


async def click(request: Request) -> Response:
    """GET/HEAD ``/c/{issue}.{link}.{token}``: 302 to the link's URL, the click queued."""
    s = state_of(request)
    m = _CLICK.match(request.path_params["token"])
    if not m:
        return s.not_found()
    issue, link_id = int(m.group(1)), int(m.group(2))
    url = await s.clicks.target(issue, link_id)
    if url is None:
        return s.not_found()
    if s.settings.tracking.clicks:
        hit = _hit(request, issue, link_id, "click", m.group(3) or "")
        if hit is not None:
            s.clicks.add(hit)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)


async def pixel(request: Request) -> Response:
    """GET/HEAD ``/o/{issue}.{token}.gif``: the 1x1 GIF, the open queued when opens are on.
    Every request gets the same image, so the pixel tells nobody which tokens are good."""
    s = state_of(request)
    m = _OPEN.match(request.path_params["token"])
    if m and s.settings.tracking.opens:
        hit = _hit(request, int(m.group(1)), None, "open", m.group(2))
        if hit is not None:
            s.clicks.add(hit)
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
