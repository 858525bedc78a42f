"""The HTTP API providers against a loopback server speaking each API's shapes.

Each test asserts the request as it went over the wire (path, auth, body) and
how the provider maps the service's answer: success, per-message errors, 429,
5xx, a 4xx rejection, and a timeout.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from datetime import UTC, datetime

import pytest
from werkzeug import Response

from pipeline.errors import ProviderError, ProviderUnavailable
from pipeline.providers import load_provider
from pipeline.providers.base import Fate, Provider
from pipeline.providers.mailgun import MailgunProvider
from pipeline.providers.postmark import PostmarkProvider
from pipeline.providers.resend import ResendProvider, idempotency_key
from pipeline.providers.sendgrid import SendGridProvider
from pipeline.providers.ses import SesProvider, sign_v4
from tests.fixtures_providers import API_ENV, setup_of

PROVIDERS = {
    "postmark": (PostmarkProvider, "BRIEF_POSTMARK_TOKEN"),
    "sendgrid": (SendGridProvider, "BRIEF_SENDGRID_API_KEY"),
    "mailgun": (MailgunProvider, "BRIEF_MAILGUN_API_KEY"),
    "ses": (SesProvider, "AWS_SECRET_ACCESS_KEY"),
    "resend": (ResendProvider, "BRIEF_RESEND_API_KEY"),
}
# The path each provider posts to (Mailgun's domain comes from brief.toml).
PATHS = {
    "postmark": "/email/batch",
    "sendgrid": "/v3/mail/send",
    "mailgun": "/v3/mg.example.com/messages",
    "ses": "/v2/email/outbound-emails",
    "resend": "/emails/batch",
}


def _provider(name, http_settings, **table):
    if name == "mailgun":
        table.setdefault("domain", "mg.example.com")
    if name == "resend":
        table.setdefault("retry_backoff", 0.01)
    cls = PROVIDERS[name][0]
    provider = cls(setup_of(http_settings(name, **table)))
    provider.open()
    return provider


def _sleepy(seconds):
    def handler(request):
        time.sleep(seconds)
        return Response("{}", status=200, content_type="application/json")

    return handler


# -- shared behaviour ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_missing_api_key_is_a_provider_error_naming_the_variable(name, http_settings):
    cls, env_name = PROVIDERS[name]
    env = {k: v for k, v in API_ENV.items() if k != env_name}
    with pytest.raises(ProviderError, match=env_name):
        cls(setup_of(http_settings(name, env=env)))


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_a_lost_answer_is_unknown(name, http_settings, http_messages, httpserver):
    # The handler outlives the client's timeout: the request went out, the answer never came.
    httpserver.expect_request(PATHS[name], method="POST").respond_with_handler(_sleepy(0.6))
    # Resend repeats the identical request first (tests/test_providers_resend.py); here not.
    extra = {"retries": 0} if name == "resend" else {}
    provider = _provider(name, http_settings, timeout=0.15, **extra)
    msgs = http_messages(http_settings.last)
    results = provider.push(msgs)
    assert [r.key for r in results] == [m.key for m in msgs]
    first = results[0]
    assert first.fate is Fate.UNKNOWN and not first.transient
    assert first.code == "timeout" and "no answer within 0.15s" in first.reason
    # SES sends one request a message: the rest of the push is held back, not sent.
    rest = results[1:]
    if name == "ses":
        assert all(r.fate is Fate.NOT_TAKEN and "not sent" in r.reason for r in rest)
    else:
        assert all(r.fate is Fate.UNKNOWN for r in rest)
    provider.close()
    provider.close()  # twice is safe


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_an_unreachable_service_raises_provider_unavailable(name, http_settings, http_messages):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = _provider(name, http_settings, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ProviderUnavailable, match="cannot connect to 127.0.0.1"):
        provider.push(http_messages(http_settings.last))


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_429_is_transient_and_says_rate_limited(name, http_settings, http_messages, httpserver):
    httpserver.expect_request(PATHS[name], method="POST").respond_with_json(
        {"message": "Too many requests", "name": "rate_limit_exceeded", "ErrorCode": 429},
        status=429,
        headers={"x-amzn-ErrorType": "TooManyRequestsException"},
    )
    provider = _provider(name, http_settings)
    results = provider.push(http_messages(http_settings.last))
    assert results and all(not r.ok and r.transient for r in results)
    assert all(r.reason.startswith("rate limited") for r in results)


@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_server_errors_are_transient(name, status, http_settings, http_messages, httpserver):
    httpserver.expect_request(PATHS[name], method="POST").respond_with_data(
        "upstream unavailable", status=status
    )
    provider = _provider(name, http_settings)
    results = provider.push(http_messages(http_settings.last))
    assert all(r.fate is Fate.TRANSIENT and not r.suppress for r in results)
    assert results[0].code.endswith(str(status))
    assert "upstream unavailable" in results[0].reason


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_refused_credentials_stop_the_provider_without_showing_the_key(
    name, http_settings, http_messages, httpserver
):
    httpserver.expect_request(PATHS[name], method="POST").respond_with_json(
        {"message": "bad key", "ErrorCode": 10, "name": "invalid_api_key"},
        status=401,
        headers={"x-amzn-ErrorType": "UnrecognizedClientException"},
    )
    provider = _provider(name, http_settings)
    with pytest.raises(ProviderError) as caught:
        provider.push(http_messages(http_settings.last))
    assert name in str(caught.value)
    for secret in API_ENV.values():
        assert secret not in str(caught.value)


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_an_empty_push_sends_nothing_and_an_oversized_one_is_refused(
    name, http_settings, http_messages, httpserver
):
    provider = _provider(name, http_settings)
    assert provider.push([]) == []
    msgs = http_messages(http_settings.last)
    with pytest.raises(ProviderError, match="at most"):
        provider.push(msgs * (provider.max_batch // len(msgs) + 1))
    assert httpserver.log == []


@pytest.mark.parametrize("name", sorted(PROVIDERS))
def test_each_provider_loads_through_its_entry_point(name, http_settings):
    provider = load_provider(
        http_settings(name, domain="mg.example.com") if name == "mailgun" else http_settings(name)
    )
    assert isinstance(provider, PROVIDERS[name][0]) and isinstance(provider, Provider)
    assert provider.name == name


def test_batch_limits_and_idempotency_follow_each_service():
    assert (
        PostmarkProvider.max_batch,
        SendGridProvider.max_batch,
        MailgunProvider.max_batch,
        ResendProvider.max_batch,
    ) == (500, 1000, 1000, 100)
    # Resend's key covers one batch as sent, not a message: after a crash rows regroup, so
    # none of the HTTP APIs may have unknown rows resent without the operator's word.
    assert not any(
        p.idempotent
        for p in (PostmarkProvider, SendGridProvider, MailgunProvider, SesProvider, ResendProvider)
    )


# -- Postmark -----------------------------------------------------------------------


def test_postmark_posts_one_batch_with_token_stream_and_personal_bodies(
    http_settings, http_messages, httpserver
):
    httpserver.expect_request(
        "/email/batch",
        method="POST",
        headers={"X-Postmark-Server-Token": "pm-server-token-123"},
    ).respond_with_json(
        [{"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{i}", "To": "x"} for i in range(3)]
    )
    provider = _provider("postmark", http_settings, message_stream="newsletter")
    msgs = http_messages(http_settings.last)
    results = provider.push(msgs)

    assert [(r.ok, r.provider_id) for r in results] == [
        (True, "pm-0"),
        (True, "pm-1"),
        (True, "pm-2"),
    ]
    request = httpserver.log[0][0]
    assert request.headers["User-Agent"].startswith("Brief/")
    sent = request.get_json()
    assert len(sent) == 3
    first, second = sent[0], sent[1]
    assert first["From"] == "The Brief <brief@example.com>"
    assert first["To"] == "Ada Lovelace <ada@example.org>"
    assert first["ReplyTo"] == "editors@example.com"
    assert first["MessageStream"] == "newsletter"
    assert first["Metadata"] == {"brief_key": "c7-d0"}
    assert "Hello Ada Lovelace," in first["TextBody"]
    assert "Hello Pat O&#x27;Brien &amp; &lt;Co&gt;," in second["HtmlBody"]
    assert "Hello Pat O'Brien & <Co>," in second["TextBody"]
    headers = {h["Name"]: h["Value"] for h in first["Headers"]}
    assert headers["List-Unsubscribe"].startswith("<https://brief.example.com/unsubscribe/tok0>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["X-Brief-Issue"] == "007"
    assert "To" not in headers and "Subject" not in headers


def test_postmark_batch_elements_are_each_messages_own_parts_and_fields(
    http_settings, http_messages, httpserver
):
    # The batch is joined from JSON bytes (bodies escaped once per issue), not json.dumps
    # of the whole list: what the service parses must still be each message's own parts.
    httpserver.expect_request("/email/batch", method="POST").respond_with_json(
        [{"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{i}", "To": "x"} for i in range(3)]
    )
    provider = _provider("postmark", http_settings)
    msgs = http_messages(http_settings.last)
    provider.push(msgs)

    request = httpserver.log[0][0]
    assert request.headers["Content-Type"] == "application/json"
    sent = json.loads(request.get_data())
    assert [(e["HtmlBody"], e["TextBody"]) for e in sent] == [(m.html, m.text) for m in msgs]
    assert [e["To"] for e in sent] == [
        "Ada Lovelace <ada@example.org>",
        '"Pat O\'Brien & <Co>" <obrien@example.net>',
        "anon@example.com",
    ]
    assert [e["Metadata"] for e in sent] == [{"brief_key": m.key} for m in msgs]
    assert all(e["Subject"] == "Issue 7: ReLU" for e in sent)


def test_postmark_maps_each_error_code_in_a_200_batch(http_settings, http_messages, httpserver):
    httpserver.expect_request("/email/batch", method="POST").respond_with_json(
        [
            {
                "ErrorCode": 406,
                "Message": "You tried to send to recipient(s) that have been marked as inactive.",
            },
            {"ErrorCode": 300, "Message": "Invalid 'To' address: 'obrien@example.net'."},
            {"ErrorCode": 0, "Message": "OK", "MessageID": "pm-ok"},
            {"ErrorCode": 429, "Message": "Rate limit exceeded"},
            {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody or both."},
            {"ErrorCode": 412, "Message": "Account is pending"},
        ]
    )
    provider = _provider("postmark", http_settings)
    msgs = http_messages(http_settings.last, 6)
    inactive, bad_to, ok, limited, bad_body, pending = provider.push(msgs)

    assert inactive.fate is Fate.PERMANENT and inactive.suppress
    assert inactive.code == "postmark 406"
    assert bad_to.fate is Fate.PERMANENT and bad_to.suppress
    assert ok.ok and ok.provider_id == "pm-ok"
    assert limited.fate is Fate.TRANSIENT and limited.reason.startswith("rate limited")
    # An empty body or a pending account is the same for everyone: pause, write nobody off.
    assert bad_body.fate is Fate.SENDER and not bad_body.suppress
    assert pending.fate is Fate.SENDER and not pending.suppress


def test_postmark_422_for_the_whole_request_is_permanent(http_settings, http_messages, httpserver):
    httpserver.expect_request("/email/batch", method="POST").respond_with_json(
        {"ErrorCode": 402, "Message": "Received invalid JSON input."}, status=422
    )
    provider = _provider("postmark", http_settings)
    results = provider.push(http_messages(http_settings.last))
    assert all(r.fate is Fate.PERMANENT and not r.suppress for r in results)
    assert "ErrorCode 402" in results[0].label


def test_postmark_unconfirmed_sender_stops_the_provider(http_settings, http_messages, httpserver):
    httpserver.expect_request("/email/batch", method="POST").respond_with_json(
        {"ErrorCode": 401, "Message": "Sender signature not confirmed"}, status=422
    )
    provider = _provider("postmark", http_settings)
    with pytest.raises(ProviderError, match="cannot send"):
        provider.push(http_messages(http_settings.last))


# -- SendGrid -----------------------------------------------------------------------


def _apply_substitutions(template: str, subs: dict[str, str]) -> str:
    for token, value in subs.items():
        template = template.replace(token, value)
    return template


def test_sendgrid_one_request_with_personalizations_reproduces_each_message(
    http_settings, http_messages, httpserver
):
    httpserver.expect_request(
        "/v3/mail/send",
        method="POST",
        headers={"Authorization": "Bearer SG.key-456"},
    ).respond_with_data("", status=202, headers={"X-Message-Id": "sg-batch-1"})
    provider = _provider("sendgrid", http_settings)
    msgs = http_messages(http_settings.last)
    results = provider.push(msgs)

    assert [(r.ok, r.provider_id) for r in results] == [(True, "sg-batch-1")] * 3
    assert len(httpserver.log) == 1
    body = httpserver.log[0][0].get_json()
    assert body["from"] == {"email": "brief@example.com", "name": "The Brief"}
    assert body["reply_to"] == {"email": "editors@example.com"}
    assert body["subject"] == "Issue 7: ReLU"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    text, html = (c["value"] for c in body["content"])
    assert "%%BRIEF_" not in text + html
    assert body["headers"]["X-Brief-Commit"] == "0" * 40
    for m, p in zip(msgs, body["personalizations"], strict=True):
        assert p["to"] == (
            [{"email": m.to_address, "name": m.to_name}] if m.to_name else [{"email": m.to_address}]
        )
        assert p["custom_args"] == {"brief_key": m.key}
        assert p["headers"]["List-Unsubscribe"] == m.headers["List-Unsubscribe"]
        assert p["headers"]["Message-ID"] == m.headers["Message-ID"]
        assert "To" not in p["headers"]
        # What SendGrid delivers after substitution is exactly our personalised parts.
        assert _apply_substitutions(text, p["substitutions"]) == m.text
        assert _apply_substitutions(html, p["substitutions"]) == m.html


def test_sendgrid_400_blaming_one_recipient_fails_only_that_one_and_sends_the_rest(
    http_settings, http_messages, httpserver
):
    httpserver.expect_oneshot_request("/v3/mail/send", method="POST").respond_with_json(
        {
            "errors": [
                {
                    "message": "Does not contain a valid address.",
                    "field": "personalizations.1.to",
                    "help": None,
                }
            ]
        },
        status=400,
    )
    httpserver.expect_oneshot_request("/v3/mail/send", method="POST").respond_with_data(
        "", status=202, headers={"X-Message-Id": "sg-2"}
    )
    provider = _provider("sendgrid", http_settings)
    msgs = http_messages(http_settings.last)
    first, blamed, third = provider.push(msgs)
    assert blamed.fate is Fate.PERMANENT and blamed.suppress
    assert "valid address" in blamed.reason
    assert first.ok and third.ok and first.provider_id == "sg-2"
    again = httpserver.log[1][0].get_json()["personalizations"]
    assert [p["custom_args"]["brief_key"] for p in again] == [msgs[0].key, msgs[2].key]


def test_sendgrid_413_splits_and_pauses_when_each_message_is_too_large_alone(
    http_settings, http_messages, httpserver
):
    httpserver.expect_request("/v3/mail/send", method="POST").respond_with_json(
        {"errors": [{"message": "The JSON payload you have included is too large."}]}, status=413
    )
    provider = _provider("sendgrid", http_settings)
    results = provider.push(http_messages(http_settings.last))
    # Too large even one at a time: the issue is, not the readers. Pause, write nobody off.
    assert all(r.fate is Fate.SENDER for r in results)
    assert results[0].code == "HTTP 413" and "too large" in results[0].reason
    assert len(httpserver.log) == 5  # 3, then 1 and 2, then the 2 alone


# -- Mailgun ------------------------------------------------------------------------


def test_mailgun_batch_uses_recipient_variables_for_bodies_headers_and_key(
    http_settings, http_messages, httpserver
):
    auth = "Basic " + base64.b64encode(b"api:mg-key-789").decode()
    httpserver.expect_request(
        "/v3/mg.example.com/messages",
        method="POST",
        headers={"Authorization": auth},
    ).respond_with_json({"id": "<20260101.1@mg.example.com>", "message": "Queued. Thank you."})
    provider = _provider("mailgun", http_settings)
    msgs = http_messages(http_settings.last)
    results = provider.push(msgs)

    assert [(r.ok, r.provider_id) for r in results] == [(True, "<20260101.1@mg.example.com>")] * 3
    form = httpserver.log[0][0].form
    assert form.getlist("to") == [m.headers["To"] for m in msgs]
    assert form["from"] == "The Brief <brief@example.com>"
    assert form["subject"] == "Issue 7: ReLU"
    assert form["h:Reply-To"] == "editors@example.com"
    assert form["h:List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert form["v:brief_key"] == "%recipient.brief_key%"
    variables = json.loads(form["recipient-variables"])
    assert list(variables) == [m.to_address for m in msgs]

    def substitute(template: str, rv: dict[str, str]) -> str:
        return re.sub(r"%recipient\.([A-Za-z0-9_]+)%", lambda g: rv[g.group(1)], template)

    for m in msgs:
        rv = variables[m.to_address]
        assert rv["brief_key"] == m.key
        assert substitute(form["text"], rv) == m.text
        assert substitute(form["html"], rv) == m.html
        assert substitute(form["h:List-Unsubscribe"], rv) == m.headers["List-Unsubscribe"]
        assert substitute(form["h:Message-ID"], rv) == m.headers["Message-ID"]


def test_mailgun_400_for_a_single_recipient_is_permanent_and_404_names_the_domain(
    http_settings, http_messages, httpserver
):
    httpserver.expect_oneshot_request("/v3/mg.example.com/messages").respond_with_json(
        {"message": "'to' parameter is not a valid address. please check documentation"}, status=400
    )
    httpserver.expect_oneshot_request("/v3/mg.example.com/messages").respond_with_json(
        {"message": "Domain not found: mg.example.com"}, status=404
    )
    provider = _provider("mailgun", http_settings)
    msgs = http_messages(http_settings.last)[:1]
    results = provider.push(msgs)
    assert all(r.fate is Fate.PERMANENT and r.suppress for r in results)
    assert "not a valid address" in results[0].reason
    with pytest.raises(ProviderError, match="mg.example.com"):
        provider.push(msgs)


def test_mailgun_domain_defaults_to_the_sending_domain(http_settings):
    provider = MailgunProvider(setup_of(http_settings("mailgun")))
    assert provider.domain == "example.com"


# -- Amazon SES ---------------------------------------------------------------------

SUITE = {
    "access_key": "AKIDEXAMPLE",
    "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    "region": "us-east-1",
    "service": "service",
    "when": datetime(2015, 8, 30, 12, 36, tzinfo=UTC),
}


@pytest.mark.parametrize(
    ("vector", "method", "url", "signature"),
    [
        (
            "get-vanilla",
            "GET",
            "https://example.amazonaws.com/",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "post-vanilla",
            "POST",
            "https://example.amazonaws.com/",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_sigv4_matches_the_aws_test_suite(vector, method, url, signature):
    headers = sign_v4(method, url, {}, b"", **SUITE)
    assert headers["X-Amz-Date"] == "20150830T123600Z"
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}"
    )


def test_sigv4_refuses_a_naive_time():
    with pytest.raises(ValueError, match="zone-aware"):
        sign_v4(
            "GET",
            "https://example.amazonaws.com/",
            {},
            b"",
            **{**SUITE, "when": datetime(2015, 8, 30, 12, 36)},
        )


def _verify_sigv4(request, secret: str, region: str) -> bool:
    """Recompute the signature from the request as received, as AWS would."""
    auth = request.headers["Authorization"]
    signed = re.search(r"SignedHeaders=([^,]+)", auth).group(1).split(";")
    when = datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    url = f"http://{request.headers['Host']}{request.path}"
    others = {
        h: request.headers[h]
        for h in signed
        if h not in ("host", "x-amz-date", "x-amz-security-token")
    }
    again = sign_v4(
        request.method,
        url,
        others,
        request.get_data(),
        access_key=API_ENV["AWS_ACCESS_KEY_ID"],
        secret_key=secret,
        region=region,
        service="ses",
        when=when,
        session_token=request.headers.get("X-Amz-Security-Token"),
    )
    return again["Authorization"] == auth


def test_ses_sends_each_raw_message_signed_for_its_region(http_settings, http_messages, httpserver):
    httpserver.expect_request("/v2/email/outbound-emails", method="POST").respond_with_json(
        {"MessageId": "ses-1"}
    )
    env = {**API_ENV, "AWS_SESSION_TOKEN": "session-token-xyz"}
    settings = http_settings("ses", env=env, region="eu-west-1", configuration_set="brief-cs")
    clock = lambda: datetime(2026, 12, 2, 7, 0, tzinfo=UTC)  # noqa: E731
    provider = SesProvider(setup_of(settings), clock=clock)
    msgs = http_messages(settings)
    results = provider.push(msgs)

    assert [(r.ok, r.provider_id) for r in results] == [(True, "ses-1")] * 3
    assert len(httpserver.log) == 3
    for (request, _), m in zip(httpserver.log, msgs, strict=True):
        body = request.get_json()
        assert base64.b64decode(body["Content"]["Raw"]["Data"]) == m.raw
        assert body["Destination"] == {"ToAddresses": [m.to_address]}
        assert body["ConfigurationSetName"] == "brief-cs"
        auth = request.headers["Authorization"]
        assert auth.startswith(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/eu-west-1/ses/"
            "aws4_request, SignedHeaders=content-type;host;x-amz-date;"
            "x-amz-security-token, Signature="
        )
        assert request.headers["X-Amz-Security-Token"] == "session-token-xyz"
        assert _verify_sigv4(request, API_ENV["AWS_SECRET_ACCESS_KEY"], "eu-west-1")
        assert not _verify_sigv4(request, "another-secret", "eu-west-1")


def test_ses_default_endpoint_is_the_regional_one(http_settings):
    provider = SesProvider(setup_of(http_settings("ses", base_url="", region="ap-southeast-2")))
    assert provider.api.base_url == "https://email.ap-southeast-2.amazonaws.com"


def test_ses_message_rejected_is_permanent_and_the_rest_still_go(
    http_settings, http_messages, httpserver
):
    httpserver.expect_oneshot_request("/v2/email/outbound-emails").respond_with_json(
        {"message": "Illegal address"},
        status=400,
        headers={"x-amzn-ErrorType": "MessageRejected:http://internal.amazon.com/coral/"},
    )
    httpserver.expect_request("/v2/email/outbound-emails").respond_with_json(
        {"MessageId": "ses-ok"}
    )
    provider = _provider("ses", http_settings)
    rejected, *rest = provider.push(http_messages(http_settings.last))
    assert rejected.fate is Fate.PERMANENT and not rejected.suppress
    assert rejected.label == "ses MessageRejected Illegal address"
    assert all(r.ok for r in rest)


def test_ses_throttling_holds_back_the_rest_of_the_push(http_settings, http_messages, httpserver):
    httpserver.expect_oneshot_request("/v2/email/outbound-emails").respond_with_json(
        {"MessageId": "ses-ok"}
    )
    httpserver.expect_request("/v2/email/outbound-emails").respond_with_json(
        {"__type": "TooManyRequestsException", "message": "Maximum sending rate exceeded."},
        status=400,
    )
    provider = _provider("ses", http_settings)
    ok, limited, held = provider.push(http_messages(http_settings.last))
    assert ok.ok
    assert limited.transient and limited.reason.startswith("rate limited")
    assert held.fate is Fate.NOT_TAKEN and "rate limited: held back" in held.reason
    assert len(httpserver.log) == 2


def test_ses_suspended_account_stops_the_provider_or_holds_the_rest(
    http_settings, http_messages, httpserver
):
    suspended = {"message": "Your account has been suspended."}
    header = {"x-amzn-ErrorType": "AccountSuspendedException"}
    httpserver.expect_oneshot_request("/v2/email/outbound-emails").respond_with_json(
        suspended, status=400, headers=header
    )
    provider = _provider("ses", http_settings)
    msgs = http_messages(http_settings.last)
    with pytest.raises(ProviderError, match="AccountSuspendedException"):
        provider.push(msgs)
    # After one accepted message, its result is kept and the rest wait.
    httpserver.expect_oneshot_request("/v2/email/outbound-emails").respond_with_json(
        {"MessageId": "ses-ok"}
    )
    httpserver.expect_request("/v2/email/outbound-emails").respond_with_json(
        suspended, status=400, headers=header
    )
    ok, *rest = provider.push(msgs)
    assert ok.ok and all(r.fate is Fate.SENDER and "cannot send" in r.reason for r in rest)


# -- Resend -------------------------------------------------------------------------


class FakeResend:
    """Resend's batch endpoint with its idempotency: the same key returns the first answer."""

    def __init__(self):
        self.answers: dict[str, dict] = {}
        self.created = 0

    def __call__(self, request):
        key = request.headers.get("Idempotency-Key")
        if key not in self.answers:
            emails = request.get_json()
            data = [{"id": f"re-{self.created + i}"} for i in range(len(emails))]
            self.created += len(emails)
            self.answers[key] = {"data": data}
        return Response(json.dumps(self.answers[key]), content_type="application/json")


def test_resend_batch_shape_and_a_repeated_batch_creates_nothing_new(
    http_settings, http_messages, httpserver
):
    fake = FakeResend()
    httpserver.expect_request(
        "/emails/batch",
        method="POST",
        headers={"Authorization": "Bearer re_key_abc", "x-batch-validation": "permissive"},
    ).respond_with_handler(fake)
    provider = _provider("resend", http_settings)
    msgs = http_messages(http_settings.last)
    first = provider.push(msgs)
    again = provider.push(msgs)
    other = provider.push(msgs[:2])

    assert [r.provider_id for r in first] == ["re-0", "re-1", "re-2"]
    assert [r.provider_id for r in again] == ["re-0", "re-1", "re-2"]
    assert [r.provider_id for r in other] == ["re-3", "re-4"]
    assert fake.created == 5  # the repeat created nothing; the smaller batch is new
    keys = [req.headers["Idempotency-Key"] for req, _ in httpserver.log]
    assert keys[0] == keys[1] == idempotency_key(msgs) and keys[2] != keys[0]
    assert len(keys[0]) <= 256
    email = httpserver.log[0][0].get_json()[1]
    assert email["from"] == "The Brief <brief@example.com>"
    assert email["to"] == [msgs[1].headers["To"]]
    assert email["reply_to"] == "editors@example.com"
    assert email["html"] == msgs[1].html and email["text"] == msgs[1].text
    assert email["headers"]["List-Unsubscribe"] == msgs[1].headers["List-Unsubscribe"]
    assert "To" not in email["headers"]
    assert email["tags"] == [{"name": "brief_key", "value": "c7-d1"}]


def test_resend_permissive_errors_fail_only_their_index(http_settings, http_messages, httpserver):
    httpserver.expect_request("/emails/batch", method="POST").respond_with_json(
        {
            "data": [{"id": "re-a"}, {"id": "re-c"}],
            "errors": [
                {
                    "index": 1,
                    "message": "Invalid `to` field. The email address needs "
                    "to follow the `email@example.com` format.",
                }
            ],
        }
    )
    provider = _provider("resend", http_settings)
    a, b, c = provider.push(http_messages(http_settings.last))
    assert (a.ok, a.provider_id, c.ok, c.provider_id) == (True, "re-a", True, "re-c")
    assert not b.ok and not b.transient and b.suppress


@pytest.mark.parametrize(
    ("status", "name", "outcome"),
    [
        (422, "validation_error", "permanent"),
        (409, "concurrent_idempotent_requests", "unknown"),
        (409, "invalid_idempotent_request", "unknown"),
        (429, "daily_quota_exceeded", "stop"),
        (422, "invalid_from_address", "stop"),
        (403, "validation_error", "stop"),
    ],
)
def test_resend_error_names_map_per_its_docs(
    status, name, outcome, http_settings, http_messages, httpserver
):
    httpserver.expect_request("/emails/batch", method="POST").respond_with_json(
        {"statusCode": status, "name": name, "message": f"about {name}"}, status=status
    )
    provider = _provider("resend", http_settings)
    msgs = http_messages(http_settings.last)
    if outcome == "stop":
        with pytest.raises(ProviderError, match=name):
            provider.push(msgs)
        return
    results = provider.push(msgs)
    assert all(r.fate is Fate(outcome) for r in results)
    assert name in results[0].label
