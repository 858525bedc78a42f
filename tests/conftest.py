"""Shared fixtures. Each area keeps its own fixtures in ``tests/fixtures_<area>.py``,
loaded here as plugins, so areas can grow without editing one shared file."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
# The glossary's format reference lives in the repository: tests read nothing outside it.
SAMPLE = REPO / "docs" / "reference" / "brief-sample-deep-learning.txt"

pytest_plugins = sorted(f"tests.{p.stem}" for p in Path(__file__).parent.glob("fixtures_*.py"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under BRIEF_NO_SKIPS (set by .ci/run) a skip is a failure: CI has every service."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("BRIEF_NO_SKIPS") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped where nothing may be (BRIEF_NO_SKIPS): {reason}"


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture
def project(tmp_path: Path, sqlite_template: Path) -> Path:
    """A private copy of the repository's newsletter (settings, content, templates), with
    its default database in place, migrated and empty, as the first ``brief`` command
    leaves it (a copy of the session's template: migrating per test is slow)."""
    from tests.fixtures_store import copy_sqlite_template

    root = tmp_path / "newsletter"
    root.mkdir()
    for name in ("glossary", "museum", "issues", "templates", "assets"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name)
        else:
            (root / name).mkdir()
    shutil.copy(REPO / "brief.toml", root / "brief.toml")
    copy_sqlite_template(sqlite_template, root / ".brief" / "brief.db")
    return root


@pytest.fixture
def settings(project: Path):
    from pipeline.config import load_settings

    return load_settings(project / "brief.toml", env={})


@pytest.fixture
def brief(project: Path, monkeypatch):
    """Run the ``brief`` command in-process against ``project``; returns an Outcome."""
    from pipeline.cli.main import main

    def run(
        *args: str,
        input: str | None = None,
        config: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Outcome:
        monkeypatch.chdir(project)
        argv = ["--config", str(config or project / "brief.toml"), *args]
        runner = CliRunner()
        with runner.isolation(input=input, env=env) as (out, err, _):
            code = main(argv)
            return Outcome(code, out.getvalue().decode(), err.getvalue().decode())

    return run
