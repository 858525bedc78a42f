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
    # The envelope sender (MAIL FROM) of each message received, per recipient.
    senders: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
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
                self.sink.senders[rcpt].append(envelope.mail_from)
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
    from pipeline.content.library import load_library
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


# ---------------------------------------------------------------------------
# SMTP over TLS: a private CA made at test time, and aiosmtpd speaking STARTTLS or TLS

SMTP_USER = "brief-sender"
SMTP_PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test CA and two server certificates it signed."""

    ca: Path
    cert: Path  # for 127.0.0.1 and localhost
    key: Path
    other_cert: Path  # for mail.example.org only: the wrong host for a loopback server
    other_key: Path


def _issue_cert(ca_key, ca_name, names: list, key_path: Path, cert_path: Path, now) -> None:
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(names[0].value))]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    """A throwaway CA and server certificates, generated with ``cryptography``."""
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Brief test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        ca=folder / "ca.pem",
        cert=folder / "server.pem",
        key=folder / "server.key",
        other_cert=folder / "other.pem",
        other_key=folder / "other.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    loopback = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    _issue_cert(ca_key, ca_name, loopback, files.key, files.cert, now)
    _issue_cert(
        ca_key, ca_name, [x509.DNSName("mail.example.org")], files.other_key, files.other_cert, now
    )
    return files


class _TlsHandler(_Handler):
    """Records, per message, whether the session was encrypted and who logged in."""

    async def handle_DATA(self, server, session, envelope):
        with self.sink.lock:
            encrypted = server.transport.get_extra_info("ssl_object") is not None
            self.sink.sessions.append((encrypted, session.auth_data))
        return await super().handle_DATA(server, session, envelope)


def _authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == SMTP_USER.encode()
        and auth_data.password == SMTP_PASSWORD.encode()
    )
    # handled=False: aiosmtpd answers 535 itself (handled=True would leave the client waiting).
    return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)


@pytest.fixture
def tls_smtp(tls_files: TlsFiles):
    """Start aiosmtpd with ``mode`` "starttls" (required, then AUTH required) or "implicit"
    (TLS from the first byte, AUTH offered); ``wrong_host`` serves the certificate made
    for another name. Returns the server's Sink."""
    import ssl

    from aiosmtpd.controller import Controller

    controllers = []

    def start(mode: str, wrong_host: bool = False) -> Sink:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if wrong_host:
            context.load_cert_chain(tls_files.other_cert, tls_files.other_key)
        else:
            context.load_cert_chain(tls_files.cert, tls_files.key)
        sink = Sink(port=free_port())
        sink.sessions = []  # type: ignore[attr-defined]
        options: dict = {"authenticator": _authenticator}
        if mode == "starttls":
            options.update(
                tls_context=context,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
            )
        else:
            # aiosmtpd counts only STARTTLS as encryption for AUTH, so on an implicit-TLS
            # socket it must be told not to insist; the sessions record shows the login.
            options.update(ssl_context=context, auth_require_tls=False)
        controller = Controller(
            _TlsHandler(sink), hostname="127.0.0.1", port=sink.port, data_size_limit=None, **options
        )
        controller.start()
        controllers.append(controller)
        return sink

    yield start
    for controller in controllers:
        controller.stop()


def use_tls_smtp(project: Path, sink: Sink, tls: str, ca_file: Path | None, user: str) -> None:
    """Point brief.toml at a TLS sink: ``tls`` mode, the CA to trust, the login name."""
    use_smtp(project, sink)
    values: dict[str, object] = {"tls": f'"{tls}"', "username": f'"{user}"'}
    if ca_file is not None:
        values["ca_file"] = f'"{ca_file}"'
    set_keys(project, "provider.smtp", **values)
