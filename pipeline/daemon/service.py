"""The daemon's wiring: the lock, APScheduler with jobs in the database, signals.

The decisions are ``pipeline.daemon.decide``'s, doing them ``pipeline.daemon.actions``'.
Here only *when* to ask: at start, when this process becomes the leader, and whenever
a persisted slot job fires
(APScheduler wakes the main thread through a listener; the tick itself runs on
the main thread, so SIGTERM reaches a send in flight). The jobs' trigger is
``SlotTrigger``, built on ``pipeline.content.calendar``: neither ``CronTrigger(week='*/2')``
(two sends running in 53-week years) nor ``IntervalTrigger(weeks=2)`` (an hour
off across daylight saving) keeps the cadence.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from sqlalchemy.engine import Engine

from pipeline.bounces.process import fetch_mailbox
from pipeline.config import Schedule, Settings
from pipeline.content import calendar
from pipeline.content.assemble import mark_sent
from pipeline.content.library import Library, read_content
from pipeline.daemon.actions import Outcome, tick
from pipeline.errors import BriefError, Problem
from pipeline.send import send_campaign
from pipeline.send.notices import drain
from pipeline.store import ledger, locks
from pipeline.store.clicks import rollup

log = logging.getLogger("brief.daemon")

JOBS_TABLE = "brief_apscheduler_jobs"
SEND_JOB = "slot-send"
ASSEMBLE_JOB = "slot-assemble"
# Per-click rows older than [tracking] keep_days are rolled up this often (seconds).
ROLLUP_EVERY = 24 * 3600


class SlotTrigger(BaseTrigger):
    """Fires at every slot of the calendar, or ``days_before`` local days before each."""

    __slots__ = ("timezone", "anchor", "send_time", "days_before")

    def __init__(self, schedule: Schedule, days_before: int = 0):
        self.timezone: ZoneInfo = schedule.timezone
        self.anchor: date = schedule.anchor
        self.send_time: time = schedule.send_time
        self.days_before = days_before

    def _schedule(self) -> Schedule:
        return Schedule(self.timezone, self.anchor, self.send_time, self.days_before, "skip", 0)

    def fire_time(self, slot: datetime) -> datetime:
        """When this trigger fires for ``slot``: same wall-clock time, ``days_before`` earlier."""
        day = slot.astimezone(self.timezone).date() - timedelta(days=self.days_before)
        return calendar.slot_at(self._schedule(), day)

    def get_next_fire_time(self, previous_fire_time, now):
        # The first fire strictly after the previous one; on first scheduling, at or after now.
        after = previous_fire_time or now - timedelta(microseconds=1)
        # A fire time is never later than its slot, so every candidate slot is after `after`.
        for slot in calendar.slots(self._schedule(), after):
            at = self.fire_time(slot)
            if at > after:
                return at
        return None  # pragma: no cover - slots() is endless

    def __getstate__(self):
        # Plain values only: a stored job must unpickle even after Settings changes shape.
        return {
            "version": 1,
            "timezone": self.timezone.key,
            "anchor": self.anchor.isoformat(),
            "send_time": self.send_time.isoformat(),
            "days_before": self.days_before,
        }

    def __setstate__(self, state):
        if state.get("version", 1) > 1:
            raise ValueError(f"SlotTrigger state version {state['version']} is too new")
        self.timezone = ZoneInfo(state["timezone"])
        self.anchor = date.fromisoformat(state["anchor"])
        self.send_time = time.fromisoformat(state["send_time"])
        self.days_before = state["days_before"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlotTrigger) and self.__getstate__() == other.__getstate__()

    def __hash__(self) -> int:
        return hash(tuple(self.__getstate__().values()))

    def __str__(self) -> str:
        ahead = f", {self.days_before} days before" if self.days_before else ""
        return (
            f"slots every {calendar.CADENCE_DAYS} days from {self.anchor} at "
            f"{self.send_time:%H:%M} {self.timezone.key}{ahead}"
        )

    def __repr__(self) -> str:
        return f"<SlotTrigger ({self})>"


def slot_reached(job: str) -> str:
    """What a persisted slot job runs: nothing but the wake-up itself (the daemon's
    listener then ticks on its own thread). Module-level so the job store can name it."""
    return job


def utcnow() -> datetime:
    return datetime.now(UTC)


class DaemonLibrary:
    """The daemon's content loader: called, the files without problems, every problem
    logged at ERROR (path:line) whenever the set of problems changes; ``problems`` holds
    those of the last load. One broken draft must not stop the Wednesday; a slot whose
    own issue is broken waits (``decide``: ``Library.withheld``)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.problems: tuple[Problem, ...] = ()

    def __call__(self) -> Library:
        loaded = read_content(self.settings)
        if loaded.problems != self.problems:
            for problem in loaded.problems:
                log.error("event=content_problem %s", problem)
        self.problems = loaded.problems
        return loaded.library


class Daemon:
    """One ``brief run`` process: stand by for the lock, then tick when slots come due."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        load_library: Callable,
        *,
        clock: Callable[[], datetime] = utcnow,
        ttl: timedelta = timedelta(seconds=60),
        poll: float = 15.0,
        holder: str | None = None,
    ):
        self.settings, self.engine, self.load_library = settings, engine, load_library
        self.clock, self.ttl, self.poll = clock, ttl, poll
        self.holder = holder or locks.new_holder()
        self.stop = threading.Event()  # the process should exit
        self.halt = threading.Event()  # the work in flight should stop after its batch
        self._wake = threading.Event()
        self._lost = threading.Event()
        self._standing_by = False
        # The BriefError that failed the last tick, if any (`run --once` exits 1 with it).
        self.tick_error: BriefError | None = None
        # When the bounce mailbox was last read (monotonic seconds; None: not yet).
        self._bounces_read_at: float | None = None
        # When clicks were last rolled up (monotonic seconds; None: not yet).
        self._clicks_rolled_at: float | None = None

    def request_stop(self) -> None:
        """Finish the batch in flight, record it, and exit (the SIGTERM/SIGINT handler)."""
        self.stop.set()
        self.halt.set()
        self._wake.set()

    # -- one pass, for cron ------------------------------------------------------

    def run_once(self) -> list[Outcome] | None:
        """Do whatever is due now, as the lock holder; None when another daemon holds it."""
        if not self._lead():
            return None
        beat = self._heartbeat()
        try:
            outcomes = self._tick()
            self._send_notices()
            self._read_bounces()
            self._roll_up_clicks()
            return outcomes
        finally:
            beat.stop()
            locks.release(self.engine, locks.DAEMON_LOCK, self.holder)

    # -- the daemon ------------------------------------------------------------------

    def run_forever(self) -> None:
        """Stand by until leader, then keep the slot jobs and tick on each; until stopped."""
        log.info("event=started holder=%s", self.holder)
        while not self.stop.is_set():
            if not self._lead():
                if self.settings.send.workers_may_join:
                    self._join_running()
                self.stop.wait(self.poll)
                continue
            self._lead_until_stopped_or_lost()
        log.info("event=stopped holder=%s", self.holder)

    def _lead_until_stopped_or_lost(self) -> None:
        beat = self._heartbeat()
        scheduler = None
        try:
            scheduler = self._scheduler()
            self._tick()  # catch up whatever came due while nobody led
            self._send_notices()
            self._read_bounces()
            self._roll_up_clicks()
            while not self.stop.is_set() and not self._lost.is_set():
                if self._wake.wait(self.poll):
                    self._wake.clear()
                    if not self.stop.is_set() and not self._lost.is_set():
                        self._tick()
                if not self.stop.is_set() and not self._lost.is_set():
                    self._send_notices()
                    self._read_bounces()
                    self._roll_up_clicks()
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)
            beat.stop()
            if self._lost.is_set():
                log.error("event=standby reason='lost the lock' holder=%s", self.holder)
                self._lost.clear()
                if not self.stop.is_set():
                    self.halt.clear()
            else:
                locks.release(self.engine, locks.DAEMON_LOCK, self.holder)

    def _join_running(self) -> None:
        """Standing by with ``[send] workers_may_join``: take rows of a send another process
        is running, through the ledger's claims and a heartbeat of our own, until none are
        left. The leader (or whoever started the send) stays in charge of it; joining never
        starts a send."""
        for campaign in ledger.running_campaigns(self.engine):
            if self.stop.is_set():
                return
            label = f"{campaign.issue_number:03d}"
            try:
                library = self.load_library()
                issue = library.issue(campaign.issue_number)
                # force: the send is running, so whoever started it decided it goes out
                # (e.g. [schedule] unapproved = "send"); a joiner does not second-guess it.
                report = send_campaign(
                    self.engine,
                    self.settings,
                    library,
                    issue,
                    campaign.list_name,
                    join=True,
                    force=True,
                    stop=self.halt,
                )
            except BriefError as exc:  # finished meanwhile, content trouble, provider setup
                log.info("event=join_skipped issue=%s reason=%r", label, str(exc))
                continue
            if report.sent_now:
                log.info(
                    "event=joined issue=%s list=%s sent_now=%d state=%s",
                    label,
                    campaign.list_name,
                    report.sent_now,
                    report.state,
                )
            if report.state == ledger.CampaignState.SENT:
                mark_sent(issue)

    def _lead(self) -> bool:
        if locks.acquire(self.engine, locks.DAEMON_LOCK, self.holder, self.clock(), self.ttl):
            log.info("event=leader holder=%s", self.holder)
            self._standing_by = False
            return True
        if not self._standing_by:  # one line when standing by begins, not one per poll
            held = locks.holder_of(self.engine, locks.DAEMON_LOCK)
            log.info("event=standby holder=%s leader=%s", self.holder, held[0] if held else "-")
            self._standing_by = True
        return False

    def _heartbeat(self) -> locks.Heartbeat:
        beat = locks.Heartbeat(
            self.engine, locks.DAEMON_LOCK, self.holder, self.ttl, self.clock, on_lost=self._on_lost
        )
        return beat.start()

    def _on_lost(self) -> None:
        self._lost.set()
        self.halt.set()
        self._wake.set()

    def _tick(self) -> list[Outcome]:
        self.tick_error = None
        try:
            return tick(
                self.engine,
                self.settings,
                self.load_library,
                holder=self.holder,
                now=self.clock(),
                stop=self.halt,
            )
        except BriefError as exc:
            # Content or database trouble: say so and wait for the next wake-up, as a
            # daemon must; a bug (anything else) still ends the process loudly.
            # Kept for `run --once`: from cron it is the run's failure (exit 1, path:line).
            self.tick_error = exc
            log.error("event=tick_failed error=%s: %s", type(exc).__name__, exc)
            return []

    def _send_notices(self) -> None:
        """Send the consent mails the public app queued (``brief serve`` does too; each row
        is claimed, so both at once never mail twice). Real time, not the slot clock."""

        def library():
            # The valid part: one broken draft must not hold back a welcome's latest issue.
            return read_content(self.settings).library

        try:
            report = drain(self.settings, self.engine, library=library)
        except BriefError as exc:
            log.error("event=notices_failed error=%s: %s", type(exc).__name__, exc)
            return
        if report.sent or report.failed or report.given_up:
            log.info(
                "event=notices sent=%d retry=%d given_up=%d",
                report.sent,
                report.failed,
                report.given_up,
            )

    def _read_bounces(self) -> None:
        """Read the ``[bounces]`` mailbox every ``interval_minutes`` (when there is one):
        bounces, complaints and mailto unsubscribes, each applied once. A mailbox that
        cannot be read is one ERROR line; the next interval tries again."""
        bounces = self.settings.bounces
        if not bounces.configured:
            return
        now = monotonic()
        due = self._bounces_read_at is None or (
            now - self._bounces_read_at >= bounces.interval_minutes * 60
        )
        if not due:
            return
        self._bounces_read_at = now
        try:
            tally = fetch_mailbox(self.engine, self.settings)
        except BriefError as exc:
            log.error("event=bounces_failed error=%s: %s", type(exc).__name__, exc)
            return
        if tally.messages:
            log.info("event=bounces %s", tally.line())

    def _roll_up_clicks(self) -> None:
        """Once a day: clicks older than ``[tracking] keep_days`` into per-link counts
        (``brief tracking rollup`` does the same by hand). A failure is one ERROR line;
        the next day tries again."""
        now = monotonic()
        if self._clicks_rolled_at is not None and now - self._clicks_rolled_at < ROLLUP_EVERY:
            return
        self._clicks_rolled_at = now
        try:
            done = rollup(self.engine, self.settings.tracking.keep_days, self.clock())
        except BriefError as exc:
            log.error("event=clicks_rollup_failed error=%s: %s", type(exc).__name__, exc)
            return
        if done.rolled:
            log.info("event=clicks_rollup rolled=%d counts=%d", done.rolled, done.counts)

    def _scheduler(self):
        from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        schedule = self.settings.schedule
        grace = max(1, int(schedule.grace_hours * 3600))
        scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=JOBS_TABLE)},
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "misfire_grace_time": grace, "max_instances": 1},
            timezone=schedule.timezone,
        )
        scheduler.add_listener(self._on_job, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
        scheduler.start(paused=True)
        ensure_jobs(scheduler, schedule)
        scheduler.resume()
        return scheduler

    def _on_job(self, event) -> None:
        from apscheduler.events import EVENT_JOB_MISSED

        what = "job_missed" if event.code == EVENT_JOB_MISSED else "job_fired"
        log.info(
            "job=%s scheduled=%s event=%s",
            event.job_id,
            event.scheduled_run_time.isoformat(timespec="minutes"),
            what,
        )
        self._wake.set()


def ensure_jobs(scheduler, schedule: Schedule) -> None:
    """Add the two slot jobs, or keep the stored ones (their next run time is what makes
    a missed slot visible after a restart); replace a trigger only if settings changed."""
    grace = max(1, int(schedule.grace_hours * 3600))
    wanted = {
        SEND_JOB: SlotTrigger(schedule),
        ASSEMBLE_JOB: SlotTrigger(schedule, schedule.assemble_ahead_days),
    }
    for job_id, trigger in wanted.items():
        job = scheduler.get_job(job_id)
        if job is None:
            scheduler.add_job(slot_reached, trigger, args=[job_id], id=job_id, name=job_id)
            continue
        if job.trigger != trigger:
            log.info("job=%s event=rescheduled trigger=%r", job_id, str(trigger))
            scheduler.reschedule_job(job_id, trigger=trigger)
        if job.misfire_grace_time != grace:
            scheduler.modify_job(job_id, misfire_grace_time=grace)
