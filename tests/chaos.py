"""Chaos harness: one real ``brief send`` subprocess, interrupted at random points.

``run_chaos`` starts ``brief send ISSUE --yes`` against a project already pointed
at an SMTP server on loopback (tests/smtp_faults.py) and a store holding the
audience; it SIGKILLs the process (and SIGTERMs it, as systemd, Docker and CI
stop things) whenever the server has received a randomly drawn number of
messages, starts it again each time, lets the last run finish on its own, and
returns what the *server* received per recipient beside what the *ledger* says.
Tests judge the send from that: see ``ChaosReport.problems``.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

BRIEF = [sys.executable, "-m", "pipeline"]


@dataclass(frozen=True)
class Run:
    """One ``brief send`` process: how it ended and what the ledger held afterwards."""

    stopped_by: str  # "SIGKILL", "SIGTERM", or "" when it ended by itself
    at_received: int  # messages the server had received when it was stopped (or ended)
    exit_code: int
    unknown: int  # rows in state unknown after the process ended
    seconds: float
    stderr: str


@dataclass(frozen=True)
class ChaosReport:
    """What the server received and what the ledger recorded, after every run."""

    audience: tuple[str, ...]
    received: Counter[str]  # copies per recipient the server took (after the final dot)
    states: dict[str, str]  # ledger state per recipient address
    counts: dict[str, int]  # ledger rows per state
    runs: tuple[Run, ...]

    @property
    def kills(self) -> int:
        return sum(1 for r in self.runs if r.stopped_by)

    def unknown_added(self) -> list[int]:
        """Unknown rows added by each interruption. A crash's rows become unknown when
        the next run starts (or at once), so each interruption is charged with the growth
        of ``unknown`` from the end of its run to the end of the next one."""
        seen = [0] + [r.unknown for r in self.runs]
        return [seen[i + 2] - seen[i + 1] for i, r in enumerate(self.runs[:-1]) if r.stopped_by]

    def problems(self, concurrency: int, per_call: int = 1) -> list[str]:
        """Every broken promise, as sentences; empty when the send kept them all:
        nobody received twice, nobody recorded sent who was not received, nobody left
        pending, and each interruption adding at most ``concurrency`` × ``per_call``
        rows to ``unknown`` (what can truly be in the provider's hands)."""
        out = []
        twice = sorted(a for a, n in self.received.items() if n > 1)
        if twice:
            out.append(f"{len(twice)} received twice or more, e.g. {twice[:3]}")
        falsely = sorted(
            a for a, s in self.states.items() if s == "sent" and not self.received.get(a)
        )
        if falsely:
            out.append(f"{len(falsely)} recorded sent but never received, e.g. {falsely[:3]}")
        left = sorted(a for a in self.audience if self.states.get(a) not in ("sent", "unknown"))
        if left:
            states = Counter(self.states.get(a, "missing") for a in left)
            out.append(f"{len(left)} neither sent nor unknown at the end: {dict(states)}")
        bound = concurrency * per_call
        added = self.unknown_added()
        if any(n > bound for n in added):
            out.append(f"unknown rows added per interruption {added} exceed {bound}")
        return out


def _ledger(engine, issue: int) -> tuple[dict[str, str], dict[str, int]]:
    from pipeline.store.ledger import campaigns, deliveries
    from pipeline.store.schema import subscribers

    d = deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(subscribers.c.email, d.state)
            .select_from(
                deliveries.join(campaigns, campaigns.c.id == d.campaign_id).join(
                    subscribers, subscribers.c.id == d.subscriber_id
                )
            )
            .where(campaigns.c.issue_number == issue)
        ).all()
    states = {email: state for email, state in rows}
    return states, dict(Counter(states.values()))


def run_chaos(
    project: Path,
    server,
    engine,
    audience: list[str],
    *,
    kills: int = 4,
    terms: int = 1,
    seed: int = 0,
    issue: int = 1,
    timeout: float = 240.0,
    extra_args: tuple[str, ...] = (),
) -> ChaosReport:
    """Run ``brief send`` until it ends by itself, interrupting it ``kills`` times with
    SIGKILL and ``terms`` times with SIGTERM at random points (seeded) of the send.

    ``server`` is a FaultySmtp (anything with ``count()`` and ``per_recipient()``)
    that ``project``'s brief.toml points at; ``audience`` the confirmed addresses.
    A SIGTERMed run gets 15 s to stop by itself before a SIGKILL ends it.
    """
    rng = random.Random(seed)
    signals = [signal.SIGKILL] * kills + [signal.SIGTERM] * terms
    rng.shuffle(signals)
    total = len(audience)
    marks = sorted(rng.sample(range(total // 10, total * 9 // 10), len(signals)))
    env = {**os.environ, "BRIEF_CONFIG": str(project / "brief.toml")}
    runs: list[Run] = []
    deadline = time.monotonic() + timeout
    plan = list(zip(signals, marks, strict=True)) + [(None, None)]
    for sig, mark in plan:
        if time.monotonic() > deadline:
            raise TimeoutError(f"chaos: the send did not finish within {timeout} s")
        log = project / f"chaos-{len(runs)}.err"
        started = time.monotonic()
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [*BRIEF, "send", str(issue), "--yes", *extra_args],
                env=env,
                cwd=project,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            stopped_by = ""
            if sig is not None:
                while proc.poll() is None and server.count() < mark:
                    if time.monotonic() > deadline:
                        proc.kill()
                        raise TimeoutError(f"chaos: stuck before {mark} messages")
                    time.sleep(0.002)
                if proc.poll() is None:
                    # a few ms more, so the signal lands in different phases of the loop
                    time.sleep(rng.uniform(0, 0.03))
                    proc.send_signal(sig)
                    stopped_by = sig.name
            try:
                # The last run finishes the send: it gets at least a minute, however long the
                # interrupted runs took on a loaded machine (the limits only stop a hang).
                code = proc.wait(timeout=15 if sig is not None else max(60, deadline - started))
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
                stopped_by = stopped_by or "SIGKILL"
        states, counts = _ledger(engine, issue)
        runs.append(
            Run(
                stopped_by,
                server.count(),
                code,
                counts.get("unknown", 0),
                time.monotonic() - started,
                log.read_text(errors="replace")[-2000:],
            )
        )
    states, counts = _ledger(engine, issue)
    return ChaosReport(tuple(audience), server.per_recipient(), states, counts, tuple(runs))
