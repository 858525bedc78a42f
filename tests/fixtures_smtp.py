"""The fault-injecting SMTP server (tests/smtp_faults.py) as a fixture."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.smtp_faults import FaultySmtp, running


@pytest.fixture(params=[False, True], ids=["one-by-one", "pipelining"])
def faulty_smtp(request) -> Iterator[FaultySmtp]:
    """A FaultySmtp on a free loopback port; script it in the test, read ``received``.

    Every test runs against it twice: answering commands one by one, and offering
    PIPELINING, when the provider writes MAIL, RCPT and DATA at once (RFC 2920)."""
    with running(FaultySmtp(pipelining=request.param)) as server:
        yield server
