"""Proofs: the rendered issue written to files as the sample reader receives it (HTML,
text and the whole .eml), linted first; for `brief render` and `brief demo`."""

from __future__ import annotations

from pathlib import Path

from pipeline.render.issue import personalise, render_issue
from pipeline.render.lint import lint_rendered, raise_errors
from pipeline.send.message import sample_message, sample_values


def write_rendered(issue, library, settings, out: Path, warn=lambda line: None) -> list[Path]:
    """Render, lint (errors raise, warnings go to ``warn``) and write NNN.html/.txt/.eml."""
    rendered = render_issue(issue, library, settings)
    for line in raise_errors(lint_rendered(rendered, issue, library, settings)):
        warn(line)
    html, text = personalise(rendered, sample_values(settings))
    files = {
        out / f"{issue.label}.html": html.encode("utf-8"),
        out / f"{issue.label}.txt": text.encode("utf-8"),
        out / f"{issue.label}.eml": sample_message(rendered, settings),
    }
    out.mkdir(parents=True, exist_ok=True)
    for path, data in files.items():
        path.write_bytes(data)
    return list(files)
