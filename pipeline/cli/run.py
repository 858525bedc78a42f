"""``brief run``: the every-other-Wednesday daemon, or one pass of it with ``--once``."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime, timedelta

import click

from pipeline.cli.main import Env
from pipeline.daemon.service import Daemon, DaemonLibrary
from pipeline.errors import BriefError, ContentError
from pipeline.send import stop_on_signals

FAILED_EVENTS = frozenset({"assemble_failed", "test_failed", "send_failed", "send_unresolved"})


def _logging() -> None:
    """One line per event on stderr, for journald or a cron mail."""
    logger = logging.getLogger("brief")
    if not any(getattr(h, "_brief", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handler._brief = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _clock(env: Env):
    """Real time, or real time shifted so that it starts at BRIEF_NOW (a rehearsal)."""
    offset = env.now() - datetime.now(UTC)
    if abs(offset) < timedelta(seconds=1):
        offset = timedelta(0)
    return lambda: datetime.now(UTC) + offset


@click.command()
@click.option(
    "--once", is_flag=True, help="Do whatever is due now and exit (for cron or a systemd timer)."
)
@click.pass_obj
def run(env: Env, once: bool) -> None:
    """Assemble ahead, mail the editors a [TEST] copy, send at the slot; until SIGTERM."""
    _logging()
    content = DaemonLibrary(env.settings)
    daemon = Daemon(env.settings, env.engine(), content, clock=_clock(env))
    # The first SIGTERM/SIGINT: finish and record what the provider holds, then exit;
    # a second one exits at once.
    with stop_on_signals(daemon.halt, lambda _name: daemon.request_stop()):
        if not once:
            daemon.run_forever()
            return
        outcomes = daemon.run_once()
        if outcomes is None:
            click.echo("another daemon holds the lock; it does what is due", err=True)
            return
        if daemon.tick_error is not None:
            raise daemon.tick_error
        failed = [o for o in outcomes if o.event in FAILED_EVENTS]
        if failed:
            raise BriefError(f"{len(failed)} action(s) failed: see the log lines above")
        # What was due is done; from cron a content problem is still the run's failure.
        if content.problems:
            raise ContentError(list(content.problems))
