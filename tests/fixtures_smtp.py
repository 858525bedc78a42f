"""The fault-injecting SMTP server (tests/smtp_faults.py) as a fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smtp_faults import FaultySmtp, running


@pytest.fixture
def faulty_smtp() -> Iterator[FaultySmtp]:
    """A FaultySmtp on a free loopback port; script it in the test, read ``received``."""
    with running(FaultySmtp()) as server:
        yield server
