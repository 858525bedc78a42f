"""Send fixtures: a real SMTP server (aiosmtpd) on loopback that records every message,
and can refuse (4xx/5xx) or drop the connection for chosen recipients."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port


@dataclass
class Sink:
    """What the SMTP server received, and what it should do to whom.

    ``rules[address]`` is a list of behaviours consumed one per attempt:
    ``("rcpt", "550 5.1.1 no such user")`` answers RCPT; ``("data", "451 ...")`` answers
    the end of DATA; ``"drop-rcpt"`` closes the connection at RCPT; ``"drop-after-data"``
    keeps the message and closes the connection instead of answering.
    """

    host: str = "127.0.0.1"
    port: int = 0
    received: dict[str, list[bytes]] = field(default_factory=lambda: defaultdict(list))
    rules: dict[str, list] = field(default_factory=dict)
    always: dict[str, object] = field(default_factory=dict)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.received.values())

    def _rule(self, address: str):
        with self.lock:
            if address in self.always:
                return self.always[address]
            queue = self.rules.get(address)
            return queue.pop(0) if queue else None


class _Handler:
    def __init__(self, sink: Sink):
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        rule = self.sink._rule(address)
        if rule == "drop-rcpt":
            server.transport.close()
            return "421 closing"
        if isinstance(rule, tuple) and rule[0] == "rcpt":
            return rule[1]
        if rule is not None:
            session.pending_rule = rule
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rule = getattr(session, "pending_rule", None)
        session.pending_rule = None
        if isinstance(rule, tuple) and rule[0] == "data":
            return rule[1]
        with self.sink.lock:
            for rcpt in envelope.rcpt_tos:
                self.sink.received[rcpt].append(envelope.original_content or envelope.content)
        if rule == "drop-after-data":
            server.transport.close()
            return "421 closing"
        return "250 OK queued as " + str(abs(hash(envelope.content)) % 10**8)


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    """An aiosmtpd server on a free loopback port, recording messages per recipient."""
    from aiosmtpd.controller import Controller

    sink = Sink(port=free_port())
    controller = Controller(
        _Handler(sink), hostname="127.0.0.1", port=sink.port, data_size_limit=None
    )
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def use_smtp(project: Path, sink: Sink, **provider: object) -> None:
    """Point the project's brief.toml at the sink (plain SMTP on loopback)."""
    path = project / "brief.toml"
    text = path.read_text()
    text, n1 = re.subn(r'(?m)^name = "outbox"', 'name = "smtp"', text)
    text, n2 = re.subn(r"(?m)^port = \d+", f"port = {sink.port}", text)
    text, n3 = re.subn(r'(?m)^tls = "starttls"', 'tls = "none"', text)
    assert (n1, n2, n3) == (1, 1, 1), "brief.toml changed shape; update use_smtp"
    for key, value in provider.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        if not n:
            text = text.replace("[provider]\n", f"[provider]\n{key} = {value}\n", 1)
    path.write_text(text)


def set_keys(project: Path, section: str, **values: object) -> None:
    """Set keys in one section of the project's brief.toml (added when missing)."""
    path = project / "brief.toml"
    text = path.read_text()
    for key, value in values.items():
        pattern = rf"(?ms)(^\[{re.escape(section)}\]\n(?:(?!^\[).)*?)^{key} = [^\n]*$"
        new, n = re.subn(pattern, rf"\g<1>{key} = {value}", text, count=1)
        text = new if n else text.replace(f"[{section}]\n", f"[{section}]\n{key} = {value}\n", 1)
    path.write_text(text)


def subscribe_many(engine, count: int, list_name: str = "main", start: int = 1) -> list[str]:
    """``count`` confirmed subscribers reader<N>@example.com; returns their addresses."""
    from pipeline.store import add_subscriber

    emails = []
    for i in range(start, start + count):
        email = f"reader{i}@example.com"
        add_subscriber(
            engine, email, f"Reader {i}", list_name=list_name, confirmed=True, source="test"
        )
        emails.append(email)
    return emails


# ---------------------------------------------------------------------------
# Campaigns on each backend (SQLite and the local PostgreSQL)


@dataclass(frozen=True)
class SendEnv:
    """A newsletter pointed at the SMTP sink, with its store on one backend."""

    project: Path
    settings: object
    engine: object
    library: object
    issue: object
    sink: Sink
    backend: str

    def send(self, **kw):
        """``send_campaign`` of issue 1 to the main list, with quick retries."""
        from pipeline.send import send_campaign

        kw.setdefault("retry_base", 0.02)
        return send_campaign(self.engine, self.settings, self.library, self.issue, "main", **kw)


class _GatedHandler(_Handler):
    """Holds every message at DATA until ``sink.gate`` opens (an "in the middle of a send")."""

    async def handle_DATA(self, server, session, envelope):
        import asyncio

        self.sink.arrived.set()
        while not self.sink.gate.is_set():
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def gated_sink() -> Iterator[Sink]:
    """Like ``smtp_sink``, but each message waits at DATA until ``sink.gate.set()``."""
    from aiosmtpd.controller import Controller

    sink = Sink(port=free_port())
    sink.gate = threading.Event()  # type: ignore[attr-defined]
    sink.arrived = threading.Event()  # type: ignore[attr-defined]
    controller = Controller(
        _GatedHandler(sink), hostname="127.0.0.1", port=sink.port, data_size_limit=None
    )
    controller.start()
    try:
        yield sink
    finally:
        sink.gate.set()
        controller.stop()


@pytest.fixture
def send_env(project: Path, store_url: str):
    """Make a ``SendEnv``: brief.toml pointed at a sink and at ``store_url`` (each backend)."""
    from pipeline.config import load_settings
    from pipeline.content import load_library
    from pipeline.store import open_store

    engines = []

    def make(sink: Sink, **provider: object) -> SendEnv:
        use_smtp(project, sink, **provider)
        set_keys(project, "database", url=f'"{store_url}"')
        settings = load_settings(project / "brief.toml", env={})
        engine = open_store(settings.database.url)
        engines.append(engine)
        library = load_library(settings.root)
        backend = engine.dialect.name
        return SendEnv(project, settings, engine, library, library.issue(1), sink, backend)

    yield make
    for engine in engines:
        engine.dispose()
