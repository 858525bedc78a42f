"""Issue 10: hypothesis drives every public endpoint with random methods, paths,
headers, bodies and tokens, on SQLite and PostgreSQL. Whatever arrives: never a 5xx,
the security headers on every response, and nothing in the store changed by a request
that proved nothing (forged tokens, unsigned or mis-signed webhooks). Only /subscribe
may change something without proof, and only its queue and rate-limit rows."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from pipeline.store import add_subscriber, audience
from pipeline.web.public import create_app
from pipeline.webhooks.ses import SnsTrust

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
PROVIDERS = ["postmark", "sendgrid", "mailgun", "ses", "resend", "acme", ""]
PRINTABLE = st.characters(min_codepoint=32, max_codepoint=126)


def _refuse(url: str, timeout: float) -> bytes:
    raise OSError("no outbound fetches from the fuzz test")  # hermetic: AWS is never asked


def _tamper(token: str, where: int) -> str:
    where %= len(token)
    swap = "A" if token[where] != "A" else "B"
    return token[:where] + swap + token[where + 1 :]


tokens = st.one_of(
    st.from_regex(r"[cuap][1-9][0-9]{0,19}\.[0-9]{1,12}\.[A-Za-z0-9_-]{24}", fullmatch=True),
    st.text(PRINTABLE, max_size=60),
    st.integers(min_value=2**31 - 2, max_value=2**64).map(lambda n: f"u{n}.0.{'A' * 24}"),
    st.sampled_from(["..", "%00", "%2e%2e%2f", "u1.0." + "A" * 24, "p1.0." + "_" * 24]),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)

webhook_shapes = st.fixed_dictionaries(
    {},
    optional={
        "RecordType": st.sampled_from(["Bounce", "SpamComplaint", "Delivery"]),
        "ID": json_values,
        "Email": st.sampled_from(["ann@example.com", "x\u0000@example.com", ""]),
        "Type": st.sampled_from(["Notification", "SubscriptionConfirmation", "HardBounce"]),
        "TopicArn": st.sampled_from([TOPIC, "arn:aws:sns:us-east-1:666666666666:evil"]),
        "SigningCertURL": st.sampled_from(
            ["https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem", "http://x"]
        ),
        "SignatureVersion": st.sampled_from(["1", "2", "3"]),
        "Signature": st.text(PRINTABLE, max_size=40),
        "MessageId": st.text(max_size=20),
        "Timestamp": st.sampled_from(["2026-11-26T12:00:00.000Z", "yesterday"]),
        "Message": st.text(max_size=40),
        "signature": st.fixed_dictionaries(
            {
                "timestamp": st.text(PRINTABLE, max_size=12),
                "token": st.text(max_size=20),
                "signature": st.text(PRINTABLE, max_size=64),
            }
        ),
        "event-data": json_values,
        "type": st.sampled_from(["email.bounced", "email.complained"]),
        "data": json_values,
    },
)

bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    webhook_shapes.map(lambda v: json.dumps(v).encode()),
    st.lists(webhook_shapes, max_size=3).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["email", "name", "list", "website", "List-Unsubscribe", "confirm_stale"]),
        st.text(max_size=40),
    ).map(lambda d: "&".join(f"{quote(k)}={quote(v)}" for k, v in d.items()).encode()),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
)

headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(
            [
                "application/json",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=zz",
                "multipart/form-data",
                "text/plain; charset=UTF-8",
                "garbage/;;;",
            ]
        ),
        "origin": st.sampled_from(
            ["https://brief.example.com", "https://evil.example", "null", "x"]
        ),
        "sec-fetch-site": st.sampled_from(["same-origin", "cross-site", "none", "?"]),
        "authorization": st.one_of(
            st.text(PRINTABLE, max_size=40).map(lambda t: f"Basic {t}"),
            st.text(PRINTABLE, max_size=40),
        ),
        "svix-id": st.text(PRINTABLE, max_size=20),
        "svix-timestamp": st.text(PRINTABLE, max_size=12),
        "svix-signature": st.text(PRINTABLE, max_size=60),
        "x-twilio-email-event-webhook-signature": st.text(PRINTABLE, max_size=60),
        "x-twilio-email-event-webhook-timestamp": st.text(PRINTABLE, max_size=12),
        "x-amz-sns-message-type": st.sampled_from(["Notification", "SubscriptionConfirmation"]),
        "x-forwarded-for": st.text(PRINTABLE, max_size=40),
    },
)


@st.composite
def requests(draw, real_tokens: list[str]):
    kind = draw(
        st.sampled_from(
            ["subscribe", "confirm", "unsubscribe", "preferences", "webhook", "archive", "raw"]
        )
    )
    if kind in ("confirm", "unsubscribe", "preferences"):
        token = draw(
            st.one_of(
                tokens,
                st.tuples(st.sampled_from(real_tokens), st.integers(0, 60)).map(
                    lambda t: _tamper(*t)
                ),
            )
        )
        path = f"/{kind}/{quote(token, safe='')}"
    elif kind == "subscribe":
        path = "/subscribe"
    elif kind == "webhook":
        path = f"/webhooks/{quote(draw(st.sampled_from(PROVIDERS)), safe='')}"
    elif kind == "archive":
        path = draw(
            st.sampled_from(
                ["/", "/issues/", "/issues/002", "/issues/999/", "/glossary/", "/feed.xml"]
            )
        )
    else:
        path = "/" + "/".join(quote(p, safe="") for p in draw(st.lists(st.text(max_size=12))))
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST", "HEAD", "PUT", "OPTIONS"]))
    return kind, method, path, draw(headers), draw(bodies)


def _snapshot(engine, with_queue: bool) -> dict:
    """What an unproven request must not change: people, consent, suppressions, events."""
    queries = {
        "subscribers": "SELECT count(*), coalesce(max(consent_seq), 0) FROM subscribers",
        "memberships": "SELECT status, count(*) FROM memberships GROUP BY status ORDER BY 1",
        "events": "SELECT count(*) FROM events",
        "suppressions": "SELECT count(*) FROM suppressions",
        "webhook_events": "SELECT count(*) FROM webhook_events",
    }
    if with_queue:
        queries["notices"] = "SELECT count(*) FROM notices"
    with engine.connect() as conn:
        return {k: [tuple(r) for r in conn.execute(sa.text(q))] for k, q in queries.items()}


@pytest.fixture
def fuzz_app(store, store_settings):
    add_subscriber(store, "ann@example.com", "Ann", confirmed=True, source="test")
    add_subscriber(store, "bob@example.com", "Bob", source="test")
    member = next(audience(store, "main"))
    real = [member.unsubscribe_token, member.preferences_token]
    hooks = {"ses": {"topics": (TOPIC,)}}
    settings_ = replace(store_settings, web=replace(store_settings.web, webhooks=hooks))
    app = create_app(settings_, engine=store, sns_trust=SnsTrust(get=_refuse))
    client = TestClient(app, base_url=settings_.newsletter.base_url, raise_server_exceptions=False)
    return client, real


@pytest.mark.slow
def test_random_requests_never_get_a_5xx_and_change_nothing_unproven(fuzz_app, store):
    client, real = fuzz_app

    @settings(
        max_examples=200,
        deadline=None,
        database=None,  # hermetic: no example database written into the repository
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(real))
    def check(request):
        kind, method, path, head, body = request
        before = _snapshot(store, with_queue=kind != "subscribe")
        response = client.request(method, path, headers=head, content=body)
        assert response.status_code < 500, (method, path, response.status_code)
        assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")
        assert response.headers.get("x-content-type-options") == "nosniff"
        assert response.headers.get("referrer-policy") == "no-referrer"
        assert _snapshot(store, with_queue=kind != "subscribe") == before, (method, path)

    check()
