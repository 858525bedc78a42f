"""``brief send`` and ``brief status`` end to end: outbox, SMTP, and a SIGKILL mid-send."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures_send import subscribe_many, use_smtp

BRIEF = [sys.executable, "-m", "pipeline"]


def _engine(project: Path):
    from pipeline.config import load_settings
    from pipeline.store import open_store

    return open_store(load_settings(project / "brief.toml", env={}).database.url)


def test_send_through_outbox_writes_one_eml_per_recipient_and_says_where(project, brief):
    subscribe_many(_engine(project), 3)
    out = brief("send", "1", "--yes")
    assert out.code == 0, out.err
    files = sorted((project / ".brief" / "outbox" / "001").glob("*.eml"))
    assert [f.name for f in files] == [f"issue-001.subscriber-{i}.eml" for i in (1, 2, 3)]
    assert ".brief/outbox/001/" in out.out and "3 sent" in out.out
    status = brief("status", "1", "--json")
    data = json.loads(status.out)[0]
    assert data["counts"]["sent"] == 3 and data["state"] == "sent"
    assert "status: sent" in (project / "issues").glob("001-*.md").__next__().read_text()


def test_send_asks_for_confirmation_with_the_count_and_no_sends_nothing(project, brief):
    subscribe_many(_engine(project), 4)
    out = brief("send", "1", input="n\n")
    assert out.code == 1 and "4 recipient(s)" in out.out
    assert not (project / ".brief" / "outbox" / "001").exists()


def test_unapproved_issue_is_one_line_error_without_traceback(project, brief):
    from pipeline.content.assemble import mark_status

    subscribe_many(_engine(project), 1)
    mark_status(next((project / "issues").glob("001-*.md")), "draft")
    out = brief("send", "1", "--yes")
    assert out.code == 1 and "not approved" in out.err
    assert len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err


def test_dry_run_prints_count_first_recipients_and_size_without_sending(project, brief):
    subscribe_many(_engine(project), 7)
    out = brief("send", "1", "--dry-run")
    assert out.code == 0, out.err
    assert "7 recipient(s)" in out.out and "reader1@example.com" in out.out
    assert "bytes" in out.out
    assert not (project / ".brief" / "outbox").exists()
    info = json.loads(brief("send", "1", "--dry-run", "--json").out)
    assert info["recipients"] == 7 and info["message_bytes"] > 1000


def test_test_copy_goes_to_the_editor_marked_test_and_outside_the_ledger(project, brief, smtp_sink):
    subscribe_many(_engine(project), 2)
    use_smtp(project, smtp_sink)
    out = brief("send", "1", "--to", "editor@example.com")
    assert out.code == 0, out.err
    (raw,) = smtp_sink.received["editor@example.com"]
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Subject"].startswith("[TEST] ")
    assert smtp_sink.count() == 1
    assert brief("status", "1").code == 1  # nothing in the ledger


def test_status_groups_failures_by_reason(project, brief, smtp_sink):
    subscribe_many(_engine(project), 30)
    use_smtp(project, smtp_sink)
    smtp_sink.always["reader3@example.com"] = ("rcpt", "550 5.1.1 no such user")
    assert brief("send", "1", "--yes").code == 0
    out = brief("status", "1")
    assert "sent 29" in out.out and "failed 1" in out.out
    assert "1 × 550 5.1.1 no such user (permanent)" in out.out
    assert "reader3@example.com" in out.out


def test_sigkill_mid_send_then_resume_mails_nobody_twice(project, smtp_sink):
    """A real `brief send` process killed with SIGKILL half way, then run again."""
    total = 300
    engine = _engine(project)
    emails = subscribe_many(engine, total)
    use_smtp(project, smtp_sink, rate_per_second=150, concurrency=3, batch_size=10)
    env = {**os.environ, "BRIEF_CONFIG": str(project / "brief.toml")}
    proc = subprocess.Popen(
        [*BRIEF, "send", "1", "--yes"],
        env=env,
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while smtp_sink.count() < 80 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the send ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = smtp_sink.count()
    assert killed_at < total

    resume = subprocess.run(
        [*BRIEF, "send", "1", "--yes"],
        env=env,
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )

    from pipeline.store import ledger

    camp = ledger.find_campaign(engine, 1, "main")
    counts = ledger.state_counts(engine, camp.id)
    unknown = {
        e for _, e, st, _ in ledger.failed_addresses(engine, camp.id, 1000) if st == "unknown"
    }
    assert counts["pending"] == 0 and counts["inflight"] == 0
    assert counts["sent"] + counts["unknown"] == total
    # Unknown deliveries wait for the operator: the exit code says the send is not finished.
    assert resume.returncode == (1 if unknown else 0), resume.stderr
    received = smtp_sink.received
    assert all(len(v) == 1 for v in received.values()), "someone got the issue twice"
    for address in emails:
        if address not in unknown:
            assert len(received[address]) == 1, address
    assert smtp_sink.count() > killed_at
