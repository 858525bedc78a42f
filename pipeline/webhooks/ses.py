"""Amazon SES bounce and complaint notifications, delivered by Amazon SNS.

SNS signs each message with RSA (SignatureVersion 1: SHA1, 2: SHA256) over a canonical
string of its fields; the certificate is fetched from ``SigningCertURL``, but only from
an allowed URL (``https://sns.<region>.amazonaws.com/…pem``): anything else could
sign its own forgery. ``SubscriptionConfirmation`` is confirmed (by fetching its
``SubscribeURL``, which must match the same pattern) only when its signature is valid.

SNS signs messages published to *any* topic, an attacker's own included, so a valid
signature proves only that the message went through SNS: its ``TopicArn`` must also be
one of ``[webhooks.ses] topics``, checked before anything is fetched.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from pipeline.errors import ConfigError
from pipeline.plugins import Key, TableSchema
from pipeline.webhooks.common import BadPayload, Event, Unverified, check_fresh, load_json, scrub
from pipeline.webhooks.registry import WebhookCall

NAME = "ses"
# Real SNS: HTTPS, an sns.<region>.amazonaws.com host (or .com.cn), a .pem path.
AWS_CERT_URL = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#]*\.pem"
AWS_SUBSCRIBE_URL = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/\?"
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)


@dataclass
class SnsTrust:
    """Which URLs may serve certificates and subscription links, and a fetcher with a cache.

    Production uses the AWS patterns; tests pass a loopback pattern explicitly through
    ``create_app``, never through settings, so configuration cannot widen it.
    """

    cert_url: str = AWS_CERT_URL
    subscribe_url: str = AWS_SUBSCRIBE_URL
    # Short: the fetch happens while the webhook request waits.
    timeout: float = 3.0
    # A certificate that could not be loaded is not tried again for this long.
    failure_ttl: float = 600.0
    max_cached: int = 64
    get: Callable[[str, float], bytes] | None = None
    _certs: dict[str, x509.Certificate] = field(default_factory=dict)
    _failed: dict[str, float] = field(default_factory=dict)

    def fetch(self, url: str) -> bytes:
        if self.get is not None:
            return self.get(url, self.timeout)
        import requests

        response = requests.get(url, timeout=self.timeout, allow_redirects=False)
        response.raise_for_status()
        return response.content

    def certificate(self, url: str) -> x509.Certificate:
        if not re.fullmatch(self.cert_url, url):
            raise Unverified("SigningCertURL is not an Amazon SNS certificate URL")
        cert = self._certs.get(url)
        if cert is not None:
            return cert
        failed_at = self._failed.get(url)
        if failed_at is not None and time.monotonic() - failed_at < self.failure_ttl:
            raise Unverified("the SNS signing certificate could not be loaded recently")
        try:
            cert = x509.load_pem_x509_certificate(self.fetch(url))
        except Exception:  # network or parse: either way the message is unproven
            self._remember(self._failed, url, time.monotonic())
            raise Unverified("could not load the SNS signing certificate") from None
        self._failed.pop(url, None)
        self._remember(self._certs, url, cert)
        return cert

    def _remember(self, cache: dict, url: str, value: object) -> None:
        if len(cache) >= self.max_cached:
            cache.pop(next(iter(cache)))  # oldest first: dicts keep insertion order
        cache[url] = value


def canonical(message: Mapping[str, str]) -> bytes:
    """The string SNS signs: selected ``Name\\nValue\\n`` pairs in byte order of names."""
    names = _NOTIFICATION_FIELDS if message.get("Type") == "Notification" else _CONFIRMATION_FIELDS
    parts = []
    for name in names:
        if name in message and message[name] is not None:
            parts.append(f"{name}\n{message[name]}\n")
    return "".join(parts).encode("utf-8")


def _check_signature(message: Mapping[str, str], trust: SnsTrust) -> None:
    version = str(message.get("SignatureVersion", ""))
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
    if algorithm is None:
        raise Unverified("unknown SNS SignatureVersion")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise Unverified("malformed SNS signature") from None
    key = trust.certificate(str(message.get("SigningCertURL", ""))).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise Unverified("the SNS certificate does not hold an RSA key")
    try:
        key.verify(signature, canonical(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Unverified("bad SNS signature") from None


@dataclass(frozen=True)
class SnsOutcome:
    """What a verified SNS delivery asked for: events to apply, or a subscription confirmed."""

    events: list[Event]
    confirmed_subscription: bool = False


_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}")


def topic_arns(key: str, values: list | tuple) -> tuple[str, ...]:
    """``[webhooks.ses] topics``: each an SNS topic ARN, or a ConfigError naming the key."""
    for value in values:
        if not isinstance(value, str) or not _TOPIC_ARN.fullmatch(value):
            raise ConfigError(
                f"{key}: {value!r} is not an SNS topic ARN like "
                "arn:aws:sns:us-east-1:123456789012:ses-bounces"
            )
    return tuple(values)


class SesVerifier:
    """``/webhooks/ses``: SNS's signature, from one of ``[webhooks.ses] topics``.

    One instance per app keeps ``trust``'s certificate cache; tests hand one with a
    loopback trust to ``create_app``, never through settings.
    """

    # topics: the only SNS TopicArns whose messages are confirmed or applied (none: none)
    settings_schema: TableSchema = {"topics": Key(list, (), check=topic_arns)}
    secrets: tuple[str, ...] = ()

    def __init__(self, trust: SnsTrust | None = None):
        self.trust = trust or SnsTrust()

    def verify(
        self, call: WebhookCall, table: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> list[Event]:
        """Check the SNS signature and age; confirm a subscription or read SES events."""
        outcome = _verify(tuple(table["topics"]), call.body, call.now, self.trust)
        return outcome.events


def _verify(topics: tuple[str, ...], body: bytes, now: datetime, trust: SnsTrust) -> SnsOutcome:
    try:
        message = load_json(body)
    except BadPayload:
        raise Unverified("not an SNS message") from None
    if not isinstance(message, dict) or not all(
        isinstance(message.get(k), str) for k in ("Type", "MessageId", "Timestamp", "Message")
    ):
        raise Unverified("not an SNS message")
    if message.get("TopicArn") not in topics:
        # Before the certificate: an unknown topic costs us no outbound fetch at all.
        raise Unverified("the SNS topic is not one of webhooks.ses.topics")
    # The cheap checks first: a stale or malformed message costs no certificate fetch.
    try:
        sent = datetime.fromisoformat(message["Timestamp"].replace("Z", "+00:00"))
    except ValueError:
        raise Unverified("malformed SNS Timestamp") from None
    if sent.tzinfo is None:
        raise Unverified("the SNS Timestamp has no time zone")
    check_fresh(sent, now)
    _check_signature(message, trust)
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not re.match(trust.subscribe_url, url):
            raise Unverified("SubscribeURL is not an Amazon SNS URL")
        try:
            trust.fetch(url)
        except Exception:
            raise BadPayload("could not reach SubscribeURL") from None
        return SnsOutcome([], confirmed_subscription=True)
    if kind != "Notification":
        return SnsOutcome([])
    try:
        inner = load_json(message["Message"].encode("utf-8", "surrogatepass"))
    except (BadPayload, UnicodeEncodeError):
        raise BadPayload("the SNS Message is not an SES notification") from None
    return SnsOutcome(_events(message["MessageId"], inner))


def _events(message_id: str, inner: object) -> list[Event]:
    if not isinstance(inner, dict):
        raise BadPayload("the SNS Message is not an SES notification")
    # Feedback notifications say notificationType; configuration-set events say eventType.
    name = inner.get("notificationType") or inner.get("eventType")
    if name == "Bounce":
        bounce = inner.get("bounce") or {}
        kind = "hard_bounce" if bounce.get("bounceType") == "Permanent" else "soft_bounce"
        people = bounce.get("bouncedRecipients") or []
        base = scrub(f"{bounce.get('bounceType', '')}/{bounce.get('bounceSubType', '')}")
    elif name == "Complaint":
        complaint = inner.get("complaint") or {}
        kind, people, base = "complaint", complaint.get("complainedRecipients") or [], ""
    else:
        return []
    mail = inner.get("mail") if isinstance(inner, dict) else None
    sent_id = mail.get("messageId") if isinstance(mail, dict) else None
    out = []
    for n, person in enumerate(people):
        email = person.get("emailAddress") if isinstance(person, dict) else None
        if not isinstance(email, str):
            raise BadPayload("a recipient lacks emailAddress")
        extra = scrub(person.get("diagnosticCode", "")) if kind != "complaint" else ""
        detail = "; ".join(x for x in (base, extra) if x)
        out.append(
            Event(
                NAME,
                f"{message_id}#{n}",
                kind,
                email,
                detail,
                provider_id=sent_id if isinstance(sent_id, str) else None,
            )
        )
    return out
