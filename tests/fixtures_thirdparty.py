"""A third party's plug-in package (tests/thirdparty/brief_acme_mail.py) installed the
way pip installs one: the module and its ``*.dist-info`` with the entry points, in a
folder of its own that goes on the path of a ``brief`` process or of this one."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

MODULE = Path(__file__).parent / "thirdparty" / "brief_acme_mail.py"
ENTRY_POINTS = """\
[brief.providers]
acme = brief_acme_mail:AcmeProvider

[brief.webhooks]
acme = brief_acme_mail:AcmeVerifier
"""


@pytest.fixture
def acme_site(tmp_path: Path) -> Path:
    """A site-packages-like folder holding the Acme package (put it on PYTHONPATH)."""
    site = tmp_path / "site-packages"
    info = site / "brief_acme_mail-1.0.dist-info"
    info.mkdir(parents=True)
    shutil.copy(MODULE, site / MODULE.name)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: brief-acme-mail\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    return site


@pytest.fixture
def acme_installed(acme_site: Path, monkeypatch):
    """The Acme package importable in this process (and forgotten afterwards)."""
    monkeypatch.syspath_prepend(str(acme_site))
    yield acme_site
    sys.modules.pop("brief_acme_mail", None)
