"""DKIM signing in the ``smtp`` provider: every message a send hands to a real SMTP server
verifies with dkimpy against the public key served by a real DNS server on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures_dns import write_rsa_key
from tests.fixtures_send import subscribe_many

GMAIL_HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "mime-version",
    "content-type",
    "reply-to",
    "list-id",
}


def add_dkim(project: Path, *, selector="brief", key_file="dkim.pem", domain=None, **extra):
    """Append a [provider.smtp.dkim] table to the project's brief.toml."""
    lines = ["", "[provider.smtp.dkim]"]
    if selector is not None:
        lines.append(f'selector = "{selector}"')
    if key_file is not None:
        lines.append(f'key_file = "{key_file}"')
    if domain is not None:
        lines.append(f'domain = "{domain}"')
    lines += [f"{k} = {v}" for k, v in extra.items()]
    path = project / "brief.toml"
    path.write_text(path.read_text() + "\n".join(lines) + "\n")


def publish_key(zone, pem: Path, name: str = "brief._domainkey.example.com") -> None:
    from cryptography.hazmat.primitives import serialization

    from pipeline.providers.dkim import dns_record

    key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    zone.add(name, "TXT", dns_record(key))  # type: ignore[arg-type]


def _tags(message: bytes) -> dict[str, str]:
    from email import message_from_bytes

    header = message_from_bytes(message)["DKIM-Signature"]
    assert header, "no DKIM-Signature header"
    flat = re.sub(r"\s+", "", str(header))
    return dict(part.split("=", 1) for part in flat.split(";") if part)


def test_every_message_a_send_hands_over_verifies_against_the_key_in_dns(
    project, send_env, smtp_sink, dns_zone, dkim_pem
):
    import dkim

    from pipeline.doctor.dns import Lookup

    (project / "dkim.pem").write_bytes(dkim_pem)
    add_dkim(project)
    env = send_env(smtp_sink)
    emails = subscribe_many(env.engine, 12)
    publish_key(dns_zone, env.project / "dkim.pem")

    report = env.send()

    assert report.sent == 12 and sorted(smtp_sink.received) == sorted(emails)
    lookup = Lookup("127.0.0.1", dns_zone.port, 10.0)
    for address, (message,) in smtp_sink.received.items():
        assert dkim.verify(message, dnsfunc=lookup.dkim_txt), address
        tags = _tags(message)
        assert tags["d"] == "example.com" and tags["s"] == "brief"
        assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed"
        assert set(tags["h"].lower().split(":")) == GMAIL_HEADERS
        # The body hash is each reader's own: their links are in it.
        assert address.encode() in message
    assert ("brief._domainkey.example.com", "TXT") in dns_zone.asked
    assert len({_tags(m[0])["bh"] for m in smtp_sink.received.values()}) == 12


def test_a_changed_header_or_body_no_longer_verifies(
    project, send_env, smtp_sink, dns_zone, dkim_pem
):
    import dkim

    from pipeline.doctor.dns import Lookup

    (project / "dkim.pem").write_bytes(dkim_pem)
    add_dkim(project)
    env = send_env(smtp_sink)
    subscribe_many(env.engine, 1)
    publish_key(dns_zone, env.project / "dkim.pem")
    env.send()
    (message,) = smtp_sink.received["reader1@example.com"]
    lookup = Lookup("127.0.0.1", dns_zone.port, 10.0)
    assert dkim.verify(message, dnsfunc=lookup.dkim_txt)
    assert not dkim.verify(
        message.replace(b"To: Reader 1", b"To: Reader 2", 1), dnsfunc=lookup.dkim_txt
    )
    assert not dkim.verify(
        message.replace(b"/unsubscribe/", b"/unsubscribf/", 1), dnsfunc=lookup.dkim_txt
    )
    # A key published for another selector is not this one.
    dns_zone.remove("brief._domainkey.example.com", "TXT")
    publish_key(dns_zone, write_rsa_key(env.project / "other.pem"))
    assert not dkim.verify(message, dnsfunc=lookup.dkim_txt)


def test_a_body_line_starting_with_a_dot_is_signed_as_the_receiver_reads_it(
    project, smtp_sink, dns_zone, dkim_pem
):
    """DATA is dot-stuffed on the wire; the signature covers the unstuffed message."""
    import dkim

    from pipeline.config import load_settings
    from pipeline.doctor.dns import Lookup
    from pipeline.mail import Content, OutgoingMessage
    from pipeline.providers import load_provider
    from tests.fixtures_send import use_smtp

    use_smtp(project, smtp_sink)
    (project / "dkim.pem").write_bytes(dkim_pem)
    add_dkim(project)
    publish_key(dns_zone, project / "dkim.pem")
    raw = (
        b"From: brief@example.com\r\nTo: kim@example.org\r\nSubject: dots\r\n"
        b"Message-ID: <dots@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n"
        b".starts with a dot\r\n..two dots\r\n.\r\nend  with   spaces \r\n"
    )
    content = Content(1, "dots", "brief@example.com", "", "brief@example.com", "", "")
    msg = OutgoingMessage("k1", "kim@example.org", None, content, {}, {}, raw, "", "")
    provider = load_provider(load_settings(project / "brief.toml", env={}))
    try:
        (result,) = provider.push([msg])
    finally:
        provider.close()
    assert result.fate.value == "sent"
    (received,) = smtp_sink.received["kim@example.org"]
    assert received.endswith(raw)  # unstuffed by the server, exactly as signed
    assert dkim.verify(received, dnsfunc=Lookup("127.0.0.1", dns_zone.port, 10.0).dkim_txt)


def test_without_a_dkim_table_nothing_is_signed(send_env, smtp_sink):
    env = send_env(smtp_sink)
    subscribe_many(env.engine, 2)
    env.send()
    assert all(b"DKIM-Signature" not in m[0] for m in smtp_sink.received.values())


def _ec_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing file", r"provider\.smtp\.dkim\.key_file: no such file"),
        ("not a key", r"provider\.smtp\.dkim\.key_file: .* holds no usable private key"),
        ("an EC key", r"provider\.smtp\.dkim\.key_file: .* not an RSA key"),
        ("no selector", r"provider\.smtp\.dkim\.selector: missing"),
        ("bad selector", r"provider\.smtp\.dkim\.selector: .* is not a DNS label"),
        ("no key file", r"provider\.smtp\.dkim\.key_file: missing"),
        ("bad domain", r"provider\.smtp\.dkim\.domain: .* is not a domain name"),
        ("unknown key", r"provider\.smtp\.dkim\.algorithm: unknown key"),
    ],
)
def test_a_wrong_dkim_table_is_a_settings_error_naming_the_key(
    project, smtp_sink, brief, dkim_pem, case, expected
):
    from tests.fixtures_send import use_smtp

    use_smtp(project, smtp_sink)
    (project / "dkim.pem").write_bytes(dkim_pem)
    kwargs: dict = {}
    if case == "missing file":
        kwargs = {"key_file": "nowhere.pem"}
    elif case == "not a key":
        (project / "junk.pem").write_text("-----BEGIN PRIVATE KEY-----\nnope\n")
        kwargs = {"key_file": "junk.pem"}
    elif case == "an EC key":
        _ec_key(project / "ec.pem")
        kwargs = {"key_file": "ec.pem"}
    elif case == "no selector":
        kwargs = {"selector": None}
    elif case == "bad selector":
        kwargs = {"selector": "bad selector!"}
    elif case == "no key file":
        kwargs = {"key_file": None}
    elif case == "bad domain":
        kwargs = {"domain": "not a domain"}
    elif case == "unknown key":
        kwargs = {"algorithm": '"ed25519"'}
    added = brief("subscribers", "add", "kim@example.org", "--confirmed", "--source", "test")
    assert added.code == 0, added
    add_dkim(project, **kwargs)
    # `brief send` builds the provider before the first message: the one-line error,
    # exit 2, nothing sent.
    out = brief("send", "1", "--yes")
    assert out.code == 2, out
    assert re.search(expected, out.err), out.err
    assert len(out.err.strip().splitlines()) == 1
    assert smtp_sink.count() == 0


_BODY_BYTES = [b"a", b"=", b" ", b"  ", b"\t", b"\r\n", b".", b"\xc3\xa9"]


def _bodies():
    from hypothesis import strategies as st

    return st.lists(st.sampled_from(_BODY_BYTES), max_size=60).map(b"".join)


def test_the_fast_relaxed_body_canonicalization_is_dkimpys():
    """Signing skips dkimpy's regex passes over the body; the bytes hashed must not change."""
    from dkim.canonicalization import Relaxed
    from hypothesis import given, settings

    from pipeline.providers.dkim import relaxed_body

    @settings(max_examples=400, deadline=None)
    @given(_bodies())
    def same(body: bytes) -> None:
        assert relaxed_body(body) == Relaxed.canonicalize_body(body)

    same()


def test_splitting_only_the_header_block_parses_as_dkimpy_does():
    from dkim import rfc822_parse
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pipeline.providers.dkim import split_message

    headers = st.lists(
        st.sampled_from([b"From: a@b.c", b"To: x", b"Subject: s", b" folded", b"\tmore"]),
        min_size=1,
        max_size=6,
    ).filter(lambda h: not h[0].startswith((b" ", b"\t")))
    ending = st.sampled_from([b"\r\n", b"\n"])

    @settings(max_examples=300, deadline=None)
    @given(headers, ending, _bodies())
    def same(lines: list[bytes], eol: bytes, body: bytes) -> None:
        message = eol.join(lines) + eol + eol + body
        assert split_message(message) == rfc822_parse(message)

    same()


def test_brief_check_reports_a_missing_dkim_key_file_before_any_send(project, brief):
    from tests.fixtures_send import Sink, use_smtp

    use_smtp(project, Sink(port=1))
    add_dkim(project, key_file="nowhere.pem")
    out = brief("check")
    assert out.code == 2, out
    assert out.err.startswith("error: provider.smtp.dkim.key_file: no such file"), out.err
