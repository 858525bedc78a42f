"""Stopping a send by signal: the first SIGTERM or SIGINT asks for a clean stop, a second
one stops at once.

A clean stop takes no new work, lets every provider call in progress finish and
records its answers, so nothing is left in doubt and the send resumes where it
stopped. systemd, Docker and CI stop processes with SIGTERM, people with Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(
    stop: threading.Event, on_stop: Callable[[str], None] | None = None
) -> Iterator[None]:
    """While inside, the first SIGTERM/SIGINT sets ``stop`` (and calls ``on_stop`` with the
    signal's name); a second one exits the process at once with 128 + the signal number
    (what is in flight is then left for the next run to find as unknown). Outside the
    main thread, where Python cannot install handlers, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def now(signum, frame):  # noqa: ARG001 - the signal handler's signature
        os._exit(128 + signum)

    def first(signum, frame):  # noqa: ARG001
        stop.set()
        for sig in SIGNALS:
            signal.signal(sig, now)
        if on_stop is not None:
            on_stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, first) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
