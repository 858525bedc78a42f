"""Fixtures for rendering and the preview: an issue to render, a live preview server,
and headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import serve_in_thread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
FIRST_ISSUE = """---
number: 1
date: 2026-12-02
subject: 'Deep Learning · Knight Capital: $460 million in 45 minutes'
preheader: 'Deep Learning: a specific kind of machine learning that needs a lot of data.'
glossary:
- deep-learning
museum:
- knight-capital
status: draft
---

This issue: **Deep Learning** in the AI Glossary, and Knight Capital Group in the Failure Museum.
"""


@pytest.fixture
def issue_project(project: Path) -> Path:
    """The project with issue 001 (deep-learning + knight-capital), shipped or written here."""
    issues = project / "issues"
    if not any(issues.glob("001-*.md")):
        (issues / "001-2026-12-02.md").write_text(FIRST_ISSUE, encoding="utf-8")
    return project


@pytest.fixture
def render_env(issue_project: Path):
    """(settings, library) loaded from the issue project, as the CLI loads them."""
    from pipeline.config import load_settings
    from pipeline.content.library import load_content as load_library

    settings = load_settings(issue_project / "brief.toml", env={})
    return settings, load_library(settings)


@pytest.fixture
def preview_server(issue_project: Path):
    """The preview app served for real by uvicorn on a free loopback port; yields its URL."""
    from pipeline.config import load_settings
    from pipeline.web.preview import create_app

    settings = load_settings(issue_project / "brief.toml", env={})
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium (the Debian package) through Playwright."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: .ci/run installs the chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
