"""Amazon SES through SNS: RSA signatures checked against a certificate fetched only from
an allowed URL. Here the "SNS" certificate is served by a loopback HTTP server, allowed
through create_app's explicit sns_trust parameter (never through settings)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.store import add_subscriber, is_suppressed
from pipeline.webhooks.ses import SnsTrust, canonical

ANN = "ann@example.com"


@pytest.fixture
def sns_key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def sns_cert(httpserver, sns_key):
    """A self-signed certificate served at /SimpleNotificationService-test.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(sns_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(sns_key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    httpserver.expect_request("/SimpleNotificationService-test.pem").respond_with_data(
        pem, content_type="application/x-pem-file"
    )
    return httpserver.url_for("/SimpleNotificationService-test.pem")


@pytest.fixture
def loopback_trust(httpserver):
    prefix = httpserver.url_for("/").rstrip("/").replace(".", r"\.")
    return SnsTrust(cert_url=prefix + r"/[^?#]*\.pem", subscribe_url=prefix + r"/\?")


OUR_TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
ATTACKER_TOPIC = "arn:aws:sns:us-east-1:666666666666:attacker-topic"


def _with_topics(settings, *topics):
    from dataclasses import replace

    return replace(settings, web=replace(settings.web, webhooks={"ses": {"topics": topics}}))


@pytest.fixture
def ses_settings(web_settings):
    return _with_topics(web_settings, OUR_TOPIC)


@pytest.fixture
def ses_client(client_for, ses_settings, loopback_trust, web_engine):
    add_subscriber(web_engine, ANN, confirmed=True, source="test")
    return client_for(ses_settings, sns_trust=loopback_trust)


def _sign(message: dict, key, version: str = "2") -> dict:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    algorithm = hashes.SHA256() if version == "2" else hashes.SHA1()
    signed = {**message, "SignatureVersion": version}
    signature = key.sign(canonical(signed), padding.PKCS1v15(), algorithm)
    return {**signed, "Signature": base64.b64encode(signature).decode()}


def _notification(cert_url: str, inner: dict, message_id="22b80b92-fdea-4c2c", topic=None) -> dict:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic or "arn:aws:sns:us-east-1:123456789012:ses-bounces",
        "Message": json.dumps(inner),
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "SigningCertURL": cert_url,
    }


BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": ANN,
                "status": "5.1.1",
                "diagnosticCode": f"smtp; 550 5.1.1 <{ANN}> unknown",
            }
        ],
        "feedbackId": "0100017",
    },
    "mail": {"messageId": "0000014"},
}


def _post(client, message):
    return client.post(
        "/webhooks/ses",
        content=json.dumps(message),
        headers={
            "x-amz-sns-message-type": message["Type"],
            "Content-Type": "text/plain; charset=UTF-8",
        },
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_ses_permanent_bounce_via_signed_sns_suppresses(
    ses_client, web_engine, sns_key, sns_cert, version
):
    response = _post(ses_client, _sign(_notification(sns_cert, BOUNCE), sns_key, version))
    assert response.status_code == 200, response.text
    assert response.json()["applied"] == 1
    assert is_suppressed(web_engine, ANN)


def test_ses_complaint_suppresses_and_replay_is_a_duplicate(
    ses_client, web_engine, sns_key, sns_cert
):
    inner = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": ANN}]},
    }
    message = _sign(_notification(sns_cert, inner, "c-1"), sns_key)
    assert _post(ses_client, message).json()["applied"] == 1
    assert _post(ses_client, message).json()["duplicates"] == 1
    assert is_suppressed(web_engine, ANN)


def test_ses_tampered_message_gets_401(ses_client, web_engine, sns_key, sns_cert):
    message = _sign(_notification(sns_cert, {**BOUNCE, "mail": {}}), sns_key)
    message["Message"] = json.dumps(BOUNCE)
    assert _post(ses_client, message).status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_ses_certificate_from_a_host_not_allowed_gets_401(
    client_for, ses_settings, web_engine, sns_key, sns_cert, httpserver
):
    add_subscriber(web_engine, ANN, confirmed=True, source="test")
    production = client_for(ses_settings)  # the AWS-only default trust
    response = _post(production, _sign(_notification(sns_cert, BOUNCE), sns_key))
    assert response.status_code == 401
    assert not is_suppressed(web_engine, ANN)
    # The certificate was never even fetched from the foreign host.
    assert httpserver.log == []


def test_ses_old_timestamp_gets_401(ses_client, web_engine, sns_key, sns_cert):
    message = _notification(sns_cert, BOUNCE)
    message["Timestamp"] = "2020-01-01T00:00:00.000Z"
    assert _post(ses_client, _sign(message, sns_key)).status_code == 401
    assert not is_suppressed(web_engine, ANN)


def _confirmation(httpserver, cert_url: str, topic=None) -> dict:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c",
        "Token": "2336412f37fb687f5d51e6e2425c464de",
        "TopicArn": topic or "arn:aws:sns:us-east-1:123456789012:ses-bounces",
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": httpserver.url_for("/") + "?Action=ConfirmSubscription&Token=2336",
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "SigningCertURL": cert_url,
    }


def test_ses_signed_subscription_confirmation_is_confirmed(
    ses_client, sns_key, sns_cert, httpserver
):
    httpserver.expect_request(
        "/", query_string={"Action": "ConfirmSubscription", "Token": "2336"}
    ).respond_with_data("ok")
    response = _post(ses_client, _sign(_confirmation(httpserver, sns_cert), sns_key))
    assert response.status_code == 200
    assert any(
        r.path == "/" and r.args.get("Action") == "ConfirmSubscription" for r, _ in httpserver.log
    )


def test_ses_forged_subscription_confirmation_is_not_followed(
    ses_client, sns_key, sns_cert, httpserver
):
    from cryptography.hazmat.primitives.asymmetric import rsa

    httpserver.expect_request("/").respond_with_data("ok")
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = _post(ses_client, _sign(_confirmation(httpserver, sns_cert), impostor))
    assert response.status_code == 401
    assert not any(r.path == "/" for r, _ in httpserver.log)


# -- issue 10 item 1: only the configured SNS topics are trusted -----------------------------
# Message shapes: AWS SNS docs "Parsing message formats" (SubscriptionConfirmation,
# Notification); SNS signs messages on *any* topic, an attacker's own included.


def _pem_requests(httpserver) -> int:
    return sum(1 for r, _ in httpserver.log if r.path.endswith(".pem"))


def test_ses_confirmation_for_a_foreign_topic_is_not_followed(
    ses_client, sns_key, sns_cert, httpserver
):
    httpserver.expect_request("/").respond_with_data("ok")
    message = _sign(_confirmation(httpserver, sns_cert, topic=ATTACKER_TOPIC), sns_key)
    response = _post(ses_client, message)
    assert response.status_code == 401
    assert not any(r.path == "/" for r, _ in httpserver.log)
    assert _pem_requests(httpserver) == 0  # nothing fetched for a topic we do not know


def test_ses_complaint_on_a_foreign_topic_suppresses_nobody(
    ses_client, web_engine, sns_key, sns_cert, httpserver
):
    inner = {
        "notificationType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": ANN}]},
    }
    message = _sign(_notification(sns_cert, inner, "evil-1", topic=ATTACKER_TOPIC), sns_key)
    assert _post(ses_client, message).status_code == 401
    assert not is_suppressed(web_engine, ANN)
    assert _pem_requests(httpserver) == 0


def test_ses_without_configured_topics_trusts_nothing(
    client_for, web_settings, web_engine, loopback_trust, sns_key, sns_cert, httpserver
):
    add_subscriber(web_engine, ANN, confirmed=True, source="test")
    assert "ses" not in web_settings.web.webhooks
    bare = client_for(web_settings, sns_trust=loopback_trust)
    assert _post(bare, _sign(_notification(sns_cert, BOUNCE), sns_key)).status_code == 401
    assert not is_suppressed(web_engine, ANN)


def test_ses_certificate_is_fetched_once_and_a_failure_is_remembered(
    ses_client, sns_key, sns_cert, httpserver
):
    for n in range(3):
        message = _sign(_notification(sns_cert, BOUNCE, f"m-{n}"), sns_key)
        assert _post(ses_client, message).status_code == 200
    assert _pem_requests(httpserver) == 1
    missing = httpserver.url_for("/SimpleNotificationService-missing.pem")
    for n in range(3):
        message = _sign(_notification(missing, BOUNCE, f"x-{n}"), sns_key)
        assert _post(ses_client, message).status_code == 401
    assert sum(1 for r, _ in httpserver.log if r.path.endswith("missing.pem")) == 1


def test_ses_certificate_fetch_has_a_short_timeout():
    assert SnsTrust().timeout <= 3


def test_ses_topics_setting_is_read_from_webhooks_ses(published):
    from pipeline.config import load_settings
    from pipeline.errors import ConfigError

    toml = published / "brief.toml"
    base = toml.read_text(encoding="utf-8")
    toml.write_text(base + f'\n[webhooks.ses]\ntopics = ["{OUR_TOPIC}"]\n', encoding="utf-8")
    assert load_settings(toml, env={}).web.webhook_table("ses")["topics"] == (OUR_TOPIC,)
    toml.write_text(base + '\n[webhooks.ses]\ntopics = ["not-an-arn"]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="webhooks.ses.topics"):
        load_settings(toml, env={})
