"""Every script in benchmarks/ runs end to end at its tiny ``--smoke`` size.

A smoke run judges no figures (speed is measured in benchmarks/, never asserted in
tests); it only proves the script still runs against today's code, so a moved function
fails here instead of on the day someone wants the figures.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted((REPO / "benchmarks").glob("bench_*.py"))
# The measured steps a smoke run must report figures for ("  <step>: {json}"): a step
# dropped from the smoke run would otherwise rot unseen.
SMOKE_STEPS = {
    "bench_clicks": (
        "send sqlite 5",
        "baseline sqlite 50/s",
        "click sqlite 50/s",
        "send postgresql 5",
        "click postgresql 50/s",
    ),
    "bench_report": ("report sqlite", "report postgresql"),
    "bench_send": (
        "smtp-sink sqlite 40",
        "aiosmtpd postgresql 40",
        "http postgresql 40",
        "noop sqlite 40",
        "noop postgresql 40",
        "join postgresql 3,000",
    ),
}


# bench_send's steps each start several processes: one case per step lets pytest-xdist
# share them out instead of one case taking minutes.
SPLIT = {"bench_send": ("smtp-sink", "aiosmtpd", "http", "noop", "join")}
CASES = [(script, step) for script in SCRIPTS for step in SPLIT.get(script.stem, (None,))]


def test_there_are_benchmarks_to_smoke():
    assert [s.name for s in SCRIPTS] and all(s.name.startswith("bench_") for s in SCRIPTS)
    # Every step split out has figures to report, so no step is smoked by nobody.
    for stem, steps in SPLIT.items():
        assert {s.split()[0] for s in SMOKE_STEPS[stem]} == set(steps)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize(
    "script, step",
    CASES,
    ids=[f"{script.stem}-{step}" if step else script.stem for script, step in CASES],
)
def test_benchmark_runs_at_smoke_size(script, step, tmp_path):
    # A clean environment: no BRIEF_* settings leak in, and scratch files go under tmp_path.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEF_")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", *(["--steps", step] if step else [])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{script.name} --smoke exited {done.returncode}:\n{output}"
    if "skipped" in output:
        # A part left out (PostgreSQL down): a skip, which CI (BRIEF_NO_SKIPS) turns into a failure.
        pytest.skip(f"{script.name} --smoke left a part out:\n{output}")
    expected = [s for s in SMOKE_STEPS.get(script.stem, ()) if not step or s.split()[0] == step]
    missing = [s for s in expected if f"  {s}: {{" not in output]
    assert not missing, f"{script.name} --smoke reported no figures for {missing}:\n{output}"
