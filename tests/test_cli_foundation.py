"""The `brief` command's foundation: check, schedule, errors at the edge."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_check_is_clean_on_the_shipped_content(brief):
    outcome = brief("check")
    assert outcome.code == 0, outcome.err
    assert outcome.out.startswith("ok: 7 glossary entries, 5 museum stories, 1 issue (")


def test_check_exits_1_with_every_content_problem(project, brief):
    (project / "glossary" / "bad.md").write_text("---\nterm: Bad\n---\n", encoding="utf-8")
    outcome = brief("check")
    assert outcome.code == 1
    lines = outcome.err.strip().splitlines()
    assert "glossary/bad.md:2: missing field 'category'" in lines
    assert all(line.startswith("glossary/bad.md:") for line in lines)
    assert "Traceback" not in outcome.err


def test_schedule_prints_iso_datetimes_with_offsets(brief):
    outcome = brief("schedule", "--next", "3", "--after", "2026-12-20T00:00")
    assert outcome.out.splitlines() == [
        "2026-12-30T07:00:00-05:00",
        "2027-01-13T07:00:00-05:00",
        "2027-01-27T07:00:00-05:00",
    ]


def test_schedule_rejects_a_bad_datetime_in_one_line(brief):
    outcome = brief("schedule", "--after", "next tuesday")
    assert outcome.code == 2
    assert "is not an ISO-8601 date or datetime" in outcome.err
    assert "Traceback" not in outcome.err


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "assemble" in result.stdout and "schedule" in result.stdout


def test_check_warns_when_ses_sends_but_no_sns_topic_is_trusted(project, brief):
    """Without `[webhooks.ses] topics` every SNS message is refused: say so before the
    first bounce is lost, not after."""
    from tests.fixtures_send import set_keys

    set_keys(project, "provider", name='"ses"')
    (project / "brief.toml").write_text(
        (project / "brief.toml").read_text() + '\n[provider.ses]\nregion = "eu-west-1"\n'
    )
    outcome = brief("check")
    assert outcome.code == 0, outcome.err
    assert "webhooks.ses.topics: empty" in outcome.err
    with (project / "brief.toml").open("a") as f:
        f.write('\n[webhooks.ses]\ntopics = ["arn:aws:sns:eu-west-1:123456789012:bounces"]\n')
    assert "webhooks.ses.topics" not in brief("check").err
