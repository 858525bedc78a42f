"""Chaos: a real ``brief send`` killed at random points, judged from what the SMTP
server received (issue 9, "Done means"). The harness is tests/chaos.py."""

from __future__ import annotations

from tests.chaos import run_chaos
from tests.fixtures_send import subscribe_many

CONCURRENCY = 4


def _prepared(send_env, faulty_smtp, recipients: int):
    env = send_env(faulty_smtp, concurrency=CONCURRENCY, rate_per_second=100)
    return env, subscribe_many(env.engine, recipients)


def test_chaos_report_names_each_broken_promise():
    """The judgement alone, on made-up outcomes: an xfail must not hide a harness that
    cannot see a duplicate, a false "sent", a row left behind, or a bound broken."""
    from collections import Counter

    from tests.chaos import ChaosReport, Run

    def run(stopped_by: str, unknown: int) -> Run:
        return Run(stopped_by, 0, 0, unknown, 0.0, "")

    audience = ("a@x.org", "b@x.org", "c@x.org", "d@x.org")
    good = ChaosReport(
        audience,
        Counter({"a@x.org": 1, "b@x.org": 1, "c@x.org": 1}),
        {"a@x.org": "sent", "b@x.org": "unknown", "c@x.org": "sent", "d@x.org": "unknown"},
        {"sent": 2, "unknown": 2},
        (run("SIGKILL", 0), run("SIGKILL", 1), run("", 2)),
    )
    assert good.unknown_added() == [1, 1] and good.problems(1) == []
    bad = ChaosReport(
        audience,
        Counter({"a@x.org": 2, "b@x.org": 1}),
        {"a@x.org": "sent", "b@x.org": "sent", "c@x.org": "sent", "d@x.org": "pending"},
        {"sent": 3, "pending": 1},
        (run("SIGTERM", 0), run("", 3)),
    )
    found = bad.problems(2)
    assert len(found) == 4, found
    assert "1 received twice" in found[0] and "c@x.org" in found[1]
    assert "{'pending': 1}" in found[2] and "[3] exceed 2" in found[3]


def test_chaos_harness_without_interruptions_sees_everyone_received_once(send_env, faulty_smtp):
    """The harness itself, on a send nobody interrupts: if this fails, the chaos
    test below fails for the harness's sake, not the send loop's."""
    env, audience = _prepared(send_env, faulty_smtp, 60)
    report = run_chaos(env.project, faulty_smtp, env.engine, audience, kills=0, terms=0)
    assert report.problems(CONCURRENCY) == []
    assert report.received == {a: 1 for a in audience}
    assert report.counts == {"sent": 60} and report.runs[0].exit_code == 0


def test_chaos_harness_charges_a_kill_with_the_rows_it_left_unknown(send_env, faulty_smtp):
    """One SIGKILL: whatever the loop, nobody is mailed twice and nobody recorded sent
    unreceived, and the unknown rows the kill left are found by ``unknown_added``."""
    env, audience = _prepared(send_env, faulty_smtp, 150)
    report = run_chaos(env.project, faulty_smtp, env.engine, audience, kills=1, terms=0, seed=3)
    assert report.kills == 1 and report.runs[0].stopped_by == "SIGKILL"
    safety = [p for p in report.problems(CONCURRENCY) if "exceed" not in p]
    assert safety == [], report.runs
    assert report.unknown_added() == [report.counts.get("unknown", 0)]


def test_sigkills_and_a_sigterm_mail_nobody_twice_and_leave_at_most_concurrency_unknown(
    send_env, faulty_smtp
):
    """Four SIGKILLs and one SIGTERM at random points of one 300-recipient send with
    concurrency 4: nobody receives twice (no --retry-unknown), nobody is recorded
    sent who was not received, and each interruption adds at most concurrency × 1
    rows to unknown (one message per SMTP call)."""
    env, audience = _prepared(send_env, faulty_smtp, 300)
    report = run_chaos(env.project, faulty_smtp, env.engine, audience, kills=4, terms=1, seed=9)
    assert report.problems(CONCURRENCY, per_call=1) == []
    assert report.kills == 5, report.runs  # each interruption landed mid-send
