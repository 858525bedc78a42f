"""Fixtures for rendering and the preview: an issue to render, a live preview server,
and headless Chromium."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

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
    from pipeline.web.preview import load_library

    settings = load_settings(issue_project / "brief.toml", env={})
    return settings, load_library(settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def preview_server(issue_project: Path):
    """The preview app served for real by uvicorn on a free loopback port; yields its URL."""
    import uvicorn

    from pipeline.config import load_settings
    from pipeline.web.preview import create_app

    settings = load_settings(issue_project / "brief.toml", env={})
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the preview server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


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
