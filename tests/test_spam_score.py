"""The shipped issue as a spam filter sees it: Debian's SpamAssassin scores it 0.0.

SpamAssassin 4 used to add 0.7 for HTML_FONT_LOW_CONTRAST because MJML's hidden preheader
was ``#ffffff`` text on the ``#f3f1ec`` page; the preheader now carries no colour at all.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest


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


def test_shipped_issue_scores_zero_with_spamassassin(brief, tmp_path):
    spamassassin = shutil.which("spamassassin")
    if spamassassin is None:
        pytest.skip("spamassassin is missing: .ci/run installs the spamassassin package")
    out = tmp_path / "render"
    result = brief("render", "1", "--out", str(out))
    assert result.code == 0, result.err
    home = tmp_path / "home"  # SpamAssassin writes its user preferences under $HOME
    home.mkdir()
    scored = subprocess.run(
        [spamassassin, "--local"],  # --local: no network tests, so the score is the same offline
        input=(out / "001.eml").read_bytes(),
        capture_output=True,
        env={"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        timeout=300,
        check=True,
    )
    msg = email.message_from_bytes(scored.stdout, policy=email.policy.compat32)
    status = re.sub(r"\s+", " ", msg["X-Spam-Status"] or "")
    assert re.search(r"\bscore=-?0\.0\b", status), status
    assert "HTML_FONT_LOW_CONTRAST" not in status
