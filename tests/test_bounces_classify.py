"""Reading one bounce-mailbox message (pure): each real-world shape in tests/data/bounces
gives the verdict its format means, the address, and the delivery (VERP or Message-ID)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

DATA = Path(__file__).parent / "data" / "bounces"
RETURN_PATH = "bounces+{key}@news.example.com"
UNSUB = "unsubscribe@news.example.com"

# file -> (verdict, address the report names, status, subscriber in the delivery key)
EXPECTED = {
    "postfix-hard.eml": ("hard_bounce", "dana@mail.example.net", "5.1.1", 1),
    "exim-hard.eml": ("hard_bounce", "erik@exim.example.org", "5.1.1", 2),
    "gmail-hard.eml": ("hard_bounce", "gina.gone@gmail.com", "5.1.1", 3),
    "m365-hard.eml": ("hard_bounce", "mo@contoso.com", "5.1.10", 4),
    "yahoo-hard.eml": ("hard_bounce", "yuki@yahoo.com", "5.0.0", 5),
    "postfix-soft.eml": ("soft_bounce", "full@mail.example.net", "4.2.2", 6),
    "arf-complaint.eml": ("complaint", None, "", 8),
    "mangled-hard.eml": ("hard_bounce", None, "5.1.1", 10),
}
IGNORED = {
    "postfix-delay.eml": "delay warning",
    "autoreply.eml": "auto-reply",
    "human.eml": "not a bounce report",
}


def _classify(raw: bytes, **kw):
    from pipeline.bounces.classify import classify

    kw.setdefault("return_path", RETURN_PATH)
    kw.setdefault("unsubscribe_address", UNSUB)
    return classify(raw, **kw)


def test_every_sample_is_covered():
    assert sorted(p.name for p in DATA.glob("*.eml")) == sorted([*EXPECTED, *IGNORED])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_report_shape_gives_its_verdict_address_and_delivery(name):
    verdict, address, status, subscriber = EXPECTED[name]
    found = _classify((DATA / name).read_bytes())
    assert found.ignored == ""
    [finding] = found.findings
    assert finding.verdict.value == verdict
    assert finding.email == address
    assert finding.status == status
    assert finding.delivery_key == f"issue-001.subscriber-{subscriber}"
    assert (finding.issue_number, finding.subscriber_id) == (1, subscriber)


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_warnings_auto_replies_and_people_are_ignored_with_the_reason(name):
    found = _classify((DATA / name).read_bytes())
    assert found.findings == ()
    assert IGNORED[name] in found.ignored


def test_without_verp_the_original_message_id_still_names_the_delivery():
    raw = (DATA / "gmail-hard.eml").read_bytes()
    [finding] = _classify(raw, return_path="").findings
    assert finding.delivery_key == "issue-001.subscriber-3" and finding.issue_number == 1


def test_a_mangled_report_without_verp_names_nobody():
    [finding] = _classify((DATA / "mangled-hard.eml").read_bytes(), return_path="").findings
    assert finding.email is None and finding.delivery_key is None


def test_a_verp_address_with_a_key_that_is_not_ours_is_not_trusted():
    raw = (
        (DATA / "mangled-hard.eml")
        .read_bytes()
        .replace(b"bounces+issue-001.subscriber-10@", b"bounces+something-else@")
    )
    [finding] = _classify(raw).findings
    assert finding.delivery_key is None


def test_a_status_4xx_that_failed_is_soft_and_5xx_is_hard():
    raw = (DATA / "postfix-hard.eml").read_bytes().replace(b"Status: 5.1.1", b"Status: 4.7.1")
    assert _classify(raw).findings[0].verdict.value == "soft_bounce"


def _mailto(subject: str, to: str = UNSUB, extra: str = "") -> bytes:
    return (
        f"From: Lee <lee@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}"
        "Message-ID: <m1@example.org>\r\n\r\nunsubscribe me\r\n"
    ).encode()


def test_a_mailto_unsubscribe_carries_the_token_from_its_subject():
    [finding] = _classify(_mailto("unsubscribe-u12.3.AbC_dEf-123")).findings
    assert finding.verdict.value == "unsubscribe"
    assert finding.token == "u12.3.AbC_dEf-123" and finding.email == "lee@example.org"


def test_an_encoded_subject_is_decoded_before_the_token_is_read():
    [finding] = _classify(_mailto("=?UTF-8?Q?unsubscribe-u12.3.AbC=5FdEf?=")).findings
    assert finding.token == "u12.3.AbC_dEf"


@pytest.mark.parametrize(
    ("subject", "to", "extra", "reason"),
    [
        ("please unsubscribe me", UNSUB, "", "without a token"),
        ("unsubscribe-u12.3.AbCdEf", UNSUB, "Auto-Submitted: auto-replied\r\n", "auto-reply"),
        # Not to the unsubscribe address: a token alone does not make it a request.
        ("unsubscribe-u12.3.AbCdEf", "someone@news.example.com", "", "not a bounce"),
    ],
)
def test_anything_else_to_the_unsubscribe_address_is_ignored(subject, to, extra, reason):
    found = _classify(_mailto(subject, to, extra))
    assert found.findings == () and reason in found.ignored


def test_without_an_unsubscribe_address_nothing_is_read_as_an_unsubscribe():
    found = _classify(_mailto("unsubscribe-u12.3.AbCdEf"), unsubscribe_address="")
    assert found.findings == ()


def test_a_message_without_message_id_is_keyed_by_its_bytes():
    raw = b"From: x@example.org\r\nSubject: hello\r\n\r\nhi\r\n"
    a, b = _classify(raw), _classify(raw + b"more\r\n")
    assert a.message_id.startswith("sha256:") and a.message_id != b.message_id
    assert _classify(raw).message_id == a.message_id


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n",
        b"Content-Type: multipart/report; report-type=feedback-report\r\n\r\nno parts",
    ],
)
def test_malformed_messages_are_read_without_an_exception(raw):
    found = _classify(raw)
    assert isinstance(found.findings, tuple)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_read_without_an_exception(raw):
    found = _classify(raw)
    assert found.message_id and isinstance(found.findings, tuple)


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_sample_cut_short_or_damaged_is_read_without_an_exception(data):
    name = data.draw(st.sampled_from(sorted([*EXPECTED, *IGNORED])))
    raw = (DATA / name).read_bytes()
    cut = data.draw(st.integers(0, len(raw)))
    noise = data.draw(st.binary(max_size=50))
    _classify(raw[:cut] + noise + raw[cut:][: data.draw(st.integers(0, 200))])
