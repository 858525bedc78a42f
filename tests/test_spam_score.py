"""The shipped issue as a spam filter sees it: Debian's SpamAssassin scores it 0.0.

SpamAssassin 4 used to add 0.7 for HTML_FONT_LOW_CONTRAST because MJML's hidden preheader
was ``#ffffff`` text on the ``#f3f1ec`` page; the preheader now carries no colour at all,
and no 1px font (invisible text, which with the issue's sec.gov sources is 1.0 for
FONT_INVIS_DOTGOV on a copy without List-Id, such as the [TEST] copy).
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.fixtures_send import subscribe_many


class _Preheader(HTMLParser):
    """The style of the element whose text is the preheader."""

    def __init__(self, preheader: str) -> None:
        super().__init__(convert_charrefs=True)
        self.preheader = preheader
        self.stack: list[str] = []
        self.style: str | None = None

    def handle_starttag(self, tag, attrs):
        self.stack.append(dict(attrs).get("style") or "")

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self.style is None and data.strip() == self.preheader and self.stack:
            self.style = self.stack[-1]


def test_hidden_preheader_has_no_colour_and_is_hidden_from_every_client(settings):
    from pipeline.content.library import load_content
    from pipeline.render.issue import render_issue

    library = load_content(settings)
    rendered = render_issue(library.issue(1), library, settings)
    parser = _Preheader(rendered.preheader)
    parser.feed(rendered.html)
    assert parser.style is not None, "the preheader is not in the HTML"
    style = parser.style.replace(" ", "")
    # Colour is what SpamAssassin compares with the background; hiding is the style's job.
    assert "color:" not in style
    for rule in ("display:none", "mso-hide:all", "max-height:0", "opacity:0", "overflow:hidden"):
        assert rule in style, rule
    # Nor a 1px font: SpamAssassin counts text right after font-size:0/1px as invisible
    # (__FONT_INVIS), and with a .gov link in the issue that is FONT_INVIS_DOTGOV.
    assert not re.search(r"font-size:[01](\.\d+)?[a-z%]", style), style


def _spam_status(spamassassin: str, raw: bytes, home: Path) -> str:
    """SpamAssassin's verdict on one message, offline: ``No, score=0.0 ... tests=...``."""
    home.mkdir(exist_ok=True)  # SpamAssassin writes its user preferences under $HOME
    scored = subprocess.run(
        [spamassassin, "--local"],  # --local: no network tests, so the score is the same offline
        input=raw,
        capture_output=True,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        timeout=300,
        check=True,
    )
    msg = email.message_from_bytes(scored.stdout, policy=email.policy.compat32)
    return re.sub(r"\s+", " ", msg["X-Spam-Status"] or "")


def test_shipped_issue_scores_zero_with_spamassassin(brief, project, tmp_path):
    """The sample .eml of `brief render`, a subscriber's copy and the editor's [TEST] copy:
    with and without the list headers (SpamAssassin weighs some rules by List-Id)."""
    spamassassin = shutil.which("spamassassin")
    if spamassassin is None:
        pytest.skip("spamassassin is missing: .ci/run installs the spamassassin package")
    from pipeline.config import load_settings
    from pipeline.store import open_store

    out = tmp_path / "render"
    result = brief("render", "1", "--out", str(out))
    assert result.code == 0, result.err
    engine = open_store(load_settings(project / "brief.toml", env={}).database.url)
    try:
        subscribe_many(engine, 1)
    finally:
        engine.dispose()
    assert brief("send", "1", "--yes").code == 0
    assert brief("send", "1", "--to", "editor@example.com").code == 0
    outbox = project / ".brief" / "outbox" / "001"
    messages = {
        "brief render .eml": out / "001.eml",
        "a subscriber's copy": outbox / "issue-001.subscriber-1.eml",
        "the [TEST] copy": next(outbox.glob("*test*.eml")),
    }
    for name, path in messages.items():
        status = _spam_status(spamassassin, path.read_bytes(), tmp_path / "home")
        assert re.search(r"\bscore=-?0\.0\b", status), f"{name}: {status}"
