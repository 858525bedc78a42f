"""`brief run` as a real process: SIGTERM mid-send finishes the batch, records it, exits 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import sqlalchemy as sa

from tests.fixtures_scheduler import outbox_files

READERS = 60


def _slow_project(project: Path) -> None:
    toml = project / "brief.toml"
    text = toml.read_text(encoding="utf-8")
    text = text.replace("rate_per_second = 0 ", "rate_per_second = 30 ")
    text = text.replace("concurrency = 4", "concurrency = 1\nbatch_size = 1")
    toml.write_text(text, encoding="utf-8")


def _sent(engine) -> list[tuple[int, int]]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("SELECT subscriber_id, attempts FROM deliveries WHERE state = 'sent'")
            )
        ]


def _brief(project: Path, *args: str, now: str) -> subprocess.Popen:
    env = {**os.environ, "BRIEF_NOW": now, "PYTHONUNBUFFERED": "1"}
    env.pop("BRIEF_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config", str(project / "brief.toml"), *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_mid_send_finishes_the_batch_records_it_and_exits_zero(project):
    from pipeline.config import load_settings
    from pipeline.store import add_subscriber, open_store

    _slow_project(project)
    settings = load_settings(project / "brief.toml", env={})
    engine = open_store(settings.database.url)
    for i in range(READERS):
        add_subscriber(engine, f"reader{i}@example.org", None, list_name="main", confirmed=True)

    proc = _brief(project, "run", now="2026-12-02T07:01")
    try:
        pause = threading.Event()
        for _ in range(1500):
            if len(_sent(engine)) >= 5 or proc.poll() is not None:
                break
            pause.wait(0.02)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    sent = _sent(engine)
    assert 5 <= len(sent) < READERS
    # Everything the provider accepted is recorded, and nothing more.
    assert len(outbox_files(settings)) == len(sent)
    assert "issue=001 event=send_paused" in err and "event=stopped" in err

    # The next pass (cron style) sends the rest, nobody twice.
    again = _brief(project, "run", "--once", now="2026-12-02T07:05")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "issue=001 event=sent" in err
    assert sorted(_sent(engine)) == [(i, 1) for i in range(1, READERS + 1)]
    assert len(outbox_files(settings)) == READERS
    engine.dispose()


def test_run_once_with_nothing_due_exits_zero_quietly(project):
    proc = _brief(project, "run", "--once", now="2026-11-20T12:00")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "event=leader" in err
    assert "event=sent" not in err and "event=skipped" not in err
