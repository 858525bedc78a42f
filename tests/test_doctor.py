"""``brief doctor``: DNS records judged through a real DNS server on loopback (dnslib),
the one-click unsubscribe against `brief serve`'s app under uvicorn, the provider's
credentials against a real SMTP server and HTTP servers shaped like each API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.fixtures_dns import write_rsa_key
from tests.fixtures_send import use_smtp
from tests.servers import free_port, serve_in_thread
from tests.test_dkim import add_dkim, publish_key

RELAY_IP = "203.0.113.7"


def add_table(project: Path, section: str, **values: object) -> None:
    """Append ``[section]`` with ``values`` (TOML literals) to the project's brief.toml."""
    path = project / "brief.toml"
    lines = ["", f"[{section}]"] + [f"{k} = {v}" for k, v in values.items()]
    path.write_text(path.read_text() + "\n".join(lines) + "\n")


def good_zone(zone, pem: Path, domain: str = "example.com") -> None:
    """Records a correct setup publishes: SPF allowing the relay, the DKIM key, DMARC, MX."""
    zone.add(domain, "TXT", "v=spf1 include:_spf.relay.example -all", "google-site-verification=x")
    zone.add("_spf.relay.example", "TXT", f"v=spf1 ip4:{RELAY_IP}/30 ~all")
    publish_key(zone, pem, f"brief._domainkey.{domain}")
    zone.add(f"_dmarc.{domain}", "TXT", "v=DMARC1; p=quarantine; adkim=s; aspf=r")
    zone.add(domain, "MX", "10 mx1.example.com")


@pytest.fixture
def doctor_project(project, smtp_sink, dns_zone, dkim_pem):
    """The project on the smtp provider (the loopback sink), signing with a DKIM key, its
    [doctor] resolver aimed at the DNS stub and expecting the relay's public address."""
    use_smtp(project, smtp_sink)
    (project / "dkim.pem").write_bytes(dkim_pem)
    (project / "dkim.pem").chmod(0o600)
    add_dkim(project)
    add_table(
        project,
        "doctor",
        resolver=f'"{dns_zone.resolver}"',
        spf_expect=f'["ip4:{RELAY_IP}"]',
        timeout=2,
    )
    return project


def _dns_checks(project: Path) -> dict[str, object]:
    from pipeline.config import load_settings
    from pipeline.doctor import Lookup, dns_checks

    settings = load_settings(project / "brief.toml", env={})
    return {c.name: c for c in dns_checks(settings, Lookup.from_settings(settings.doctor))}


def test_a_correct_setup_passes_every_dns_check(doctor_project, dns_zone):
    good_zone(dns_zone, doctor_project / "dkim.pem")
    checks = _dns_checks(doctor_project)
    assert {n: c.status.value for n, c in checks.items()} == {
        "spf": "ok",
        "dkim": "ok",
        "dmarc": "ok",
        "mx": "ok",
    }, checks
    assert "ip4:203.0.113.7" in checks["spf"].reason
    # Everything came from the stub: the resolver setting is obeyed.
    assert ("brief._domainkey.example.com", "TXT") in dns_zone.asked
    assert ("_spf.relay.example", "TXT") in dns_zone.asked


@pytest.mark.parametrize(
    "change, check, reason, fix",
    [
        ("no spf", "spf", r"publishes no SPF record", r'"v=spf1 ip4:203\.0\.113\.7 ~all"'),
        (
            "spf without relay",
            "spf",
            r"does not allow ip4:203\.0\.113\.7",
            r"add ip4:203\.0\.113\.7",
        ),
        ("two spf", "spf", r"publishes 2 SPF records", r"merge them"),
        ("spf +all", "spf", r"ends in \+all", r"~all or -all"),
        (
            "spf include missing",
            "spf",
            r"_spf\.relay\.example .*has no SPF record",
            r"every include",
        ),
        ("no dkim", "dkim", r"no DKIM key published at brief\._domainkey", r"v=DKIM1; k=rsa; p="),
        ("other dkim key", "dkim", r"not the public half", r"v=DKIM1; k=rsa; p="),
        ("revoked dkim", "dkim", r"empty p=: the key is revoked", r"v=DKIM1"),
        ("no dmarc", "dmarc", r"no DMARC record at _dmarc\.example\.com", r"v=DMARC1; p=none"),
        ("dmarc without policy", "dmarc", r"no valid p= policy", r"p=none"),
        ("no mx", "mx", r"example\.com has no MX record", r"publish an MX record"),
    ],
)
def test_each_missing_or_wrong_record_fails_with_the_reason_and_the_fix(
    doctor_project, dns_zone, change, check, reason, fix
):
    pem = doctor_project / "dkim.pem"
    good_zone(dns_zone, pem)
    if change == "no spf":
        dns_zone.remove("example.com", "TXT")
        dns_zone.add("example.com", "TXT", "google-site-verification=x")
    elif change == "spf without relay":
        dns_zone.remove("_spf.relay.example", "TXT")
        dns_zone.add("_spf.relay.example", "TXT", "v=spf1 ip4:198.51.100.0/24 ~all")
    elif change == "two spf":
        dns_zone.add("example.com", "TXT", "v=spf1 -all")
    elif change == "spf +all":
        dns_zone.remove("example.com", "TXT")
        dns_zone.add("example.com", "TXT", f"v=spf1 ip4:{RELAY_IP} +all")
    elif change == "spf include missing":
        dns_zone.remove("_spf.relay.example", "TXT")
    elif change == "no dkim":
        dns_zone.remove("brief._domainkey.example.com", "TXT")
    elif change == "other dkim key":
        dns_zone.remove("brief._domainkey.example.com", "TXT")
        publish_key(dns_zone, write_rsa_key(doctor_project / "other.pem"))
    elif change == "revoked dkim":
        dns_zone.remove("brief._domainkey.example.com", "TXT")
        dns_zone.add("brief._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=")
    elif change == "no dmarc":
        dns_zone.remove("_dmarc.example.com", "TXT")
    elif change == "dmarc without policy":
        dns_zone.remove("_dmarc.example.com", "TXT")
        dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; rua=mailto:d@example.com")
    elif change == "no mx":
        dns_zone.remove("example.com", "MX")
    checks = _dns_checks(doctor_project)
    judged = checks[check]
    assert judged.status.value == "fail", judged
    assert re.search(reason, judged.reason), judged.reason
    assert re.search(fix, judged.fix), judged.fix
    # The other checks are not dragged down by this one record.
    assert all(c.status.value == "ok" for n, c in checks.items() if n != check), checks


def test_a_private_key_others_can_read_is_a_warning_with_the_fix(doctor_project, dns_zone):
    good_zone(dns_zone, doctor_project / "dkim.pem")
    (doctor_project / "dkim.pem").chmod(0o644)
    dkim = _dns_checks(doctor_project)["dkim"]
    assert dkim.status.value == "warn" and "readable by other users" in dkim.reason
    assert dkim.fix == f"chmod 600 {doctor_project / 'dkim.pem'}"


@pytest.mark.parametrize(
    "value, host, port",
    [
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        ("9.9.9.9", "9.9.9.9", 53),
        ("[::1]:5353", "::1", 5353),
        ("2620:fe::fe", "2620:fe::fe", 53),
        ("", "", 53),
    ],
)
def test_the_doctor_resolver_setting_reads_an_address_and_a_port(project, value, host, port):
    from pipeline.config import load_settings

    add_table(project, "doctor", resolver=f'"{value}"')
    doctor = load_settings(project / "brief.toml", env={}).doctor
    assert (doctor.resolver, doctor.resolver_port) == (host, port)


@pytest.mark.parametrize("value", ["dns.example.com", "127.0.0.1:0", "127.0.0.1:70000", "1.2.3"])
def test_a_resolver_that_is_not_an_address_and_port_is_refused(project, value):
    from pipeline.config import load_settings
    from pipeline.errors import ConfigError

    add_table(project, "doctor", resolver=f'"{value}"')
    with pytest.raises(ConfigError, match=r"^doctor\.resolver: "):
        load_settings(project / "brief.toml", env={})


def test_dkim_signed_for_a_parent_domain_is_aligned_only_when_dmarc_is_relaxed(
    doctor_project, dns_zone
):
    """From news.example.com signed d=example.com: relaxed alignment passes, strict fails."""
    text = (doctor_project / "brief.toml").read_text()
    text = text.replace(
        'from_address = "brief@example.com"', 'from_address = "brief@news.example.com"'
    )
    text = text.replace('selector = "brief"', 'selector = "brief"\ndomain = "example.com"')
    (doctor_project / "brief.toml").write_text(text)
    good_zone(dns_zone, doctor_project / "dkim.pem", "news.example.com")
    dns_zone.remove("brief._domainkey.news.example.com", "TXT")
    publish_key(dns_zone, doctor_project / "dkim.pem", "brief._domainkey.example.com")
    dns_zone.remove("_dmarc.news.example.com", "TXT")
    dns_zone.add("_dmarc.news.example.com", "TXT", "v=DMARC1; p=reject; adkim=r")
    assert _dns_checks(doctor_project)["dmarc"].status.value == "ok"

    dns_zone.remove("_dmarc.news.example.com", "TXT")
    dns_zone.add("_dmarc.news.example.com", "TXT", "v=DMARC1; p=reject; adkim=s")
    dmarc = _dns_checks(doctor_project)["dmarc"]
    assert dmarc.status.value == "fail"
    assert "DKIM d=example.com is not aligned with From news.example.com (adkim=s" in dmarc.reason
    assert "provider.smtp.dkim.domain = 'news.example.com'" in dmarc.fix


def test_dmarc_published_only_at_the_organisational_domain_counts(doctor_project, dns_zone):
    text = (doctor_project / "brief.toml").read_text()
    (doctor_project / "brief.toml").write_text(
        text.replace(
            'from_address = "brief@example.com"', 'from_address = "brief@news.example.com"'
        )
    )
    good_zone(dns_zone, doctor_project / "dkim.pem", "news.example.com")
    dns_zone.remove("_dmarc.news.example.com", "TXT")
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none")
    dmarc = _dns_checks(doctor_project)["dmarc"]
    assert dmarc.status.value == "ok" and "_dmarc.example.com" in dmarc.reason


def test_a_silent_resolver_is_could_not_ask_not_missing(doctor_project):
    from pipeline.config import load_settings
    from pipeline.doctor import Lookup, dns_checks

    settings = load_settings(doctor_project / "brief.toml", env={})
    # A loopback UDP port nobody answers on.
    lookup = Lookup("127.0.0.1", free_port(), 0.3)
    checks = dns_checks(settings, lookup)
    assert all(c.status.value == "fail" and "could not ask DNS" in c.reason for c in checks)


# -- the one-click unsubscribe -------------------------------------------------------------


def test_one_click_against_brief_serve_on_loopback_http_is_a_warning_not_a_failure(live_public):
    from pipeline.doctor import one_click_check

    base, settings, engine = live_public
    check = one_click_check(settings)
    assert check.status.value == "warn", check
    assert "answers the one-click POST, over http on loopback" in check.reason


def test_one_click_over_https_with_a_trusted_certificate_passes(live_public, tls_files):
    """`brief serve`'s app behind TLS (uvicorn with a certificate from a test CA)."""
    from dataclasses import replace

    from pipeline.doctor import one_click_check
    from pipeline.web.public import create_app

    _, settings, engine = live_public
    port = free_port()
    app = create_app(settings, engine=engine)
    with serve_in_thread(
        app,
        port,
        ssl_certfile=str(tls_files.cert),
        ssl_keyfile=str(tls_files.key),
        access_log=False,
    ):
        https = replace(
            settings, newsletter=replace(settings.newsletter, base_url=f"https://127.0.0.1:{port}")
        )
        check = one_click_check(https, verify=str(tls_files.ca))
        assert check.status.value == "ok", check
        untrusted = one_click_check(https)  # the system's CAs do not know the test CA
        assert untrusted.status.value == "fail" and "not trusted" in untrusted.reason


def test_an_http_base_url_on_a_real_host_fails_with_the_fix(settings):
    from dataclasses import replace

    from pipeline.doctor import one_click_check

    plain = replace(
        settings, newsletter=replace(settings.newsletter, base_url="http://brief.example.com")
    )
    check = one_click_check(plain)
    assert check.status.value == "fail"
    assert "only to https URLs" in check.reason and "https://" in check.fix


@pytest.mark.parametrize(
    "answer, reason",
    [
        (("Not Found", 404), r"answered 404 without Brief's bad-link page"),
        (("oops", 502), r"answered 502"),
        (("", 301, {"Location": "https://elsewhere.example/"}), r"is redirected \(301"),
    ],
)
def test_something_else_at_base_url_fails(settings, httpserver, answer, reason):
    from dataclasses import replace

    from pipeline.doctor import one_click_check

    body, status, *headers = answer
    httpserver.expect_request(re.compile("/unsubscribe/.*"), method="POST").respond_with_data(
        body, status=status, headers=headers[0] if headers else None
    )
    base = httpserver.url_for("/").rstrip("/")
    other = replace(settings, newsletter=replace(settings.newsletter, base_url=base))
    check = one_click_check(other)
    assert check.status.value == "fail", check
    assert re.search(reason, check.reason), check.reason


def test_nothing_listening_at_base_url_fails(settings):
    from dataclasses import replace

    from pipeline.doctor import one_click_check

    gone = replace(
        settings,
        newsletter=replace(settings.newsletter, base_url=f"http://127.0.0.1:{free_port()}"),
    )
    check = one_click_check(gone, timeout=2)
    assert check.status.value == "fail" and "no answer" in check.reason


# -- the provider's credentials ----------------------------------------------------------


def test_smtp_credentials_are_checked_by_connecting_and_saying_ehlo(doctor_project, smtp_sink):
    from pipeline.config import load_settings
    from pipeline.doctor import credentials_check

    check = credentials_check(load_settings(doctor_project / "brief.toml", env={}))
    assert check.status.value == "ok", check
    assert f"127.0.0.1:{smtp_sink.port} answered EHLO" in check.reason
    assert smtp_sink.count() == 0  # nothing was sent


def test_smtp_that_does_not_answer_fails(project):
    from pipeline.config import load_settings
    from pipeline.doctor import credentials_check
    from tests.fixtures_send import Sink

    use_smtp(project, Sink(port=free_port()))
    check = credentials_check(load_settings(project / "brief.toml", env={}))
    assert check.status.value == "fail" and "cannot connect" in check.reason


# Each API's read-only endpoint and the credentials header it must carry.
API_PROBES = {
    "postmark": (
        "/server",
        "X-Postmark-Server-Token",
        "pm-server-token-123",
        {"ID": 1, "Name": "Brief"},
    ),
    "sendgrid": ("/v3/scopes", "Authorization", "Bearer SG.key-456", {"scopes": ["mail.send"]}),
    "mailgun": (
        "/v3/domains/example.com",
        "Authorization",
        "Basic YXBpOm1nLWtleS03ODk=",
        {"domain": {"name": "example.com", "state": "active"}},
    ),
    "ses": (
        "/v2/email/account",
        "Authorization",
        re.compile(r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/us-east-1/ses/aws4_request, "),
        {"SendingEnabled": True, "ProductionAccessEnabled": True},
    ),
    "resend": (
        "/domains",
        "Authorization",
        "Bearer re_key_abc",
        {"data": [{"name": "example.com", "status": "verified"}]},
    ),
}


@pytest.mark.parametrize("name", sorted(API_PROBES))
def test_api_credentials_are_checked_with_a_read_only_call(http_settings, httpserver, name):
    from pipeline.doctor import credentials_check

    path, header, value, body = API_PROBES[name]
    httpserver.expect_request(path, method="GET").respond_with_json(body)
    check = credentials_check(http_settings(name))
    assert check.status.value == "ok", check
    assert f"GET {path} answered 200" in check.reason
    ((request, _),) = httpserver.log
    sent = request.headers.get(header, "")
    assert value.match(sent) if isinstance(value, re.Pattern) else sent == value, sent


@pytest.mark.parametrize("name", sorted(API_PROBES))
def test_refused_api_credentials_fail_naming_the_refusal(http_settings, httpserver, name):
    from pipeline.doctor import credentials_check

    path = API_PROBES[name][0]
    httpserver.expect_request(path, method="GET").respond_with_json(
        {"ErrorCode": 10, "Message": "Request does not contain a valid Server token."}, status=401
    )
    check = credentials_check(http_settings(name))
    assert check.status.value == "fail", check
    assert "the credentials were refused" in check.reason


def test_a_missing_api_key_fails_naming_the_variable(http_settings):
    from pipeline.doctor import credentials_check

    check = credentials_check(http_settings("postmark", env={}))
    assert check.status.value == "fail" and "BRIEF_POSTMARK_TOKEN" in check.reason


# -- the next issue ------------------------------------------------------------------------


def test_the_next_issue_is_measured_linted_and_scored_by_spamassassin(settings):
    from pipeline.doctor import issue_checks

    checks = {c.name: c for c in issue_checks(settings)}
    assert (
        checks["size"].status.value == "ok"
        and "KB (Gmail clips over 102 KB)" in checks["size"].reason
    )
    assert checks["lint"].status.value in ("ok", "warn")
    spam = checks["spamassassin"]
    assert spam.status.value in ("ok", "warn", "fail")
    assert re.search(r"score -?[\d.]+", spam.reason), spam


def test_without_spamassassin_the_score_is_a_warning_with_the_fix(settings, tmp_path):
    from pipeline.doctor import issue_checks

    checks = {c.name: c for c in issue_checks(settings, spamassassin=str(tmp_path / "nowhere"))}
    assert checks["spamassassin"].status.value == "warn"


# -- the command ---------------------------------------------------------------------------


def test_brief_doctor_records_prints_what_to_publish(doctor_project, brief, dns_zone):
    out = brief("doctor", "--records")
    assert out.code == 0, out
    lines = out.out.strip().splitlines()
    assert lines[0] == f'example.com. IN TXT "v=spf1 ip4:{RELAY_IP} ~all"'
    assert lines[1].startswith('brief._domainkey.example.com. IN TXT "v=DKIM1; k=rsa; p=MII')
    assert lines[2] == '_dmarc.example.com. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@example.com"'
    # What --records prints, published, passes the DKIM check.
    strings = re.findall(r'"([^"]*)"', lines[1])
    assert all(len(c) <= 255 for c in strings) and len(strings) == 2  # 2048 bits: two strings
    dns_zone.add("brief._domainkey.example.com", "TXT", "".join(strings))
    assert _dns_checks(doctor_project)["dkim"].status.value == "ok"


def test_brief_doctor_prints_a_line_per_check_and_exits_non_zero_on_a_failure(
    doctor_project, brief, dns_zone
):
    good_zone(dns_zone, doctor_project / "dkim.pem")
    toml = doctor_project / "brief.toml"
    toml.write_text(  # nothing answers at base_url
        toml.read_text().replace("https://brief.example.com", f"http://127.0.0.1:{free_port()}")
    )
    out = brief("doctor", "--json")
    assert out.code == 1, out
    checks = {c["check"]: c for c in json.loads(out.out)}
    assert [checks[n]["status"] for n in ("spf", "dkim", "dmarc", "mx", "credentials")] == [
        "ok"
    ] * 5
    assert checks["one-click"]["status"] == "fail" and checks["one-click"]["fix"]

    text = brief("doctor")
    assert text.code == 1
    assert re.search(
        r"(?m)^ok   dkim +brief\._domainkey\.example\.com publishes the configured key$", text.out
    )
    assert re.search(r"(?m)^fail one-click +.*\(fix: .+\)$", text.out)
    assert "checks failed" in text.err


def test_a_bad_doctor_resolver_is_a_settings_error_naming_the_key(project, brief):
    add_table(project, "doctor", resolver='"dns.example.com"')
    out = brief("doctor")
    assert out.code == 2
    assert out.err.startswith("error: doctor.resolver: 'dns.example.com' is not an IP address")


def test_a_bad_spf_expectation_is_a_settings_error_naming_the_key(project, brief):
    add_table(project, "doctor", spf_expect='["relay.example.com"]')
    out = brief("doctor")
    assert (
        out.code == 2
        and "doctor.spf_expect: 'relay.example.com' is not an SPF mechanism" in out.err
    )


def test_on_an_api_provider_spf_must_include_the_providers_and_dkim_is_theirs(
    project, http_settings, dns_zone
):
    from pipeline.doctor import Lookup, dns_checks

    add_table(project, "doctor", resolver=f'"{dns_zone.resolver}"', timeout=2)
    settings = http_settings("postmark")
    dns_zone.add("example.com", "TXT", "v=spf1 include:_spf.google.com ~all")
    dns_zone.add("_spf.google.com", "TXT", "v=spf1 ip4:192.0.2.0/24 ~all")
    dns_zone.add("_dmarc.example.com", "TXT", "v=DMARC1; p=none")
    dns_zone.add("example.com", "MX", "10 mx1.example.com")
    checks = {c.name: c for c in dns_checks(settings, Lookup.from_settings(settings.doctor))}
    assert checks["spf"].status.value == "fail"
    assert "does not allow include:spf.mtasv.net" in checks["spf"].reason
    assert checks["dkim"].status.value == "ok" and "signed by postmark" in checks["dkim"].reason
    assert checks["dmarc"].reason.endswith("alignment is the provider's to show")

    dns_zone.remove("example.com", "TXT")
    dns_zone.add("example.com", "TXT", "v=spf1 include:_spf.google.com include:spf.mtasv.net ~all")
    dns_zone.add("spf.mtasv.net", "TXT", "v=spf1 ip4:50.31.156.0/23 -all")
    checks = {c.name: c for c in dns_checks(settings, Lookup.from_settings(settings.doctor))}
    assert checks["spf"].status.value == "ok", checks["spf"]
