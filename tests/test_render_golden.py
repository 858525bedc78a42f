"""The golden issue: a fixed input rendered by the repository's templates must match
tests/golden/001.html and 001.txt byte for byte. After a deliberate template change,
regenerate with ``BRIEF_REGEN_GOLDEN=1 pytest tests/test_render_golden.py`` and review the diff."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"


def test_golden_issue_renders_exactly_as_recorded(tmp_path):
    from pipeline.config import load_settings
    from pipeline.content.library import load_content as load_library
    from pipeline.render.issue import render_issue

    root = tmp_path / "newsletter"
    shutil.copytree(GOLDEN / "newsletter", root)
    shutil.copytree(REPO / "templates", root / "templates")
    settings = load_settings(root / "brief.toml", env={})
    library = load_library(settings)
    rendered = render_issue(library.issue(1), library, settings)
    outputs = {"001.html": rendered.html, "001.txt": rendered.text}
    if os.environ.get("BRIEF_REGEN_GOLDEN") == "1":
        for name, body in outputs.items():
            (GOLDEN / name).write_text(body, encoding="utf-8")
        pytest.skip("golden files regenerated (BRIEF_REGEN_GOLDEN=1): review the diff")
    for name, body in outputs.items():
        expected = (GOLDEN / name).read_text(encoding="utf-8")
        assert body == expected, f"{name} differs from tests/golden/{name}"
