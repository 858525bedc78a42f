"""Amazon SES through its v2 API: one signed ``SendEmail`` with raw MIME per message.

Follows the Amazon SES API v2 Reference, "SendEmail" (``POST
/v2/email/outbound-emails`` with ``Content.Raw.Data`` base64, ``Destination``,
``ConfigurationSetName``; errors AccountSuspendedException, BadRequestException,
LimitExceededException, MailFromDomainNotVerifiedException, MessageRejected,
NotFoundException, SendingPausedException, TooManyRequestsException) and the
AWS General Reference, "Signature Version 4 signing process" (checked against
the published SigV4 test suite). No boto3: the request is signed here with
hashlib and hmac. SES may also be used through its SMTP interface with the
``smtp`` provider (see docs/providers.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import requests

from pipeline.errors import ProviderError, ProviderUnavailable
from pipeline.providers.base import Fate, Key, OutgoingMessage, ProviderSetup, Result, scrub
from pipeline.providers.http import (
    Failure,
    HttpProvider,
    api_schema,
    body_json,
    detail,
    is_transient_status,
    post,
    require_secret,
    unaddressed,
)

ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
SESSION_TOKEN_ENV = "AWS_SESSION_TOKEN"
SERVICE = "ses"
PATH = "/v2/email/outbound-emails"

THROTTLED = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException"})
# The account, sender or configuration cannot send at all: stop the campaign.
ACCOUNT = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "LimitExceededException",
    }
)
CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AccessDeniedException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidClientTokenId",
    }
)
PERMANENT = frozenset({"MessageRejected", "BadRequestException"})
# MessageRejected for an identity that may not send ("Email address is not verified. The
# following identities failed the check…"; moto: "Did not have authority to send from
# email …"): the sender is wrong, not the recipient. Pause.
_UNVERIFIED = re.compile(r"not verified|authority to send|sending authori", re.I)
_DEFAULT_PORTS = {"http": 80, "https": 443}


# -- Signature Version 4 --------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def _uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes
) -> tuple[str, str]:
    """The SigV4 canonical request and its signed-header list, for ``headers`` as sent."""
    parts = urlsplit(url)
    path = "/".join(_uri_encode(seg) for seg in (parts.path or "/").split("/"))
    query = "&".join(
        f"{k}={v}"
        for k, v in sorted(
            (_uri_encode(k), _uri_encode(v))
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        )
    )
    canon = sorted((k.lower().strip(), " ".join(str(v).split())) for k, v in headers.items())
    signed = ";".join(k for k, _ in canon)
    lines = [
        method.upper(),
        path or "/",
        query,
        "".join(f"{k}:{v}\n" for k, v in canon),
        signed,
        _sha256(body),
    ]
    return "\n".join(lines), signed


def host_header(url: str) -> str:
    """The Host header as HTTP clients send it: the scheme's default port left out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host += f":{parts.port}"
    return host


def sign_v4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    service: str,
    when: datetime,
    session_token: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request: X-Amz-Date, Authorization (and the session token).

    ``headers`` are the request's other headers to sign; Host is taken from the URL.
    """
    if when.tzinfo is None:
        raise ValueError("sign_v4 needs a zone-aware time")
    when = when.astimezone(UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    added = {"X-Amz-Date": amz_date}
    if session_token:
        added["X-Amz-Security-Token"] = session_token
    to_sign = {"Host": host_header(url), **headers, **added}
    request, signed = canonical_request(method, url, to_sign, body)
    scope = f"{day}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, _sha256(request.encode("utf-8"))]
    )
    key = _hmac(("AWS4" + secret_key).encode("utf-8"), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return added


# -- the provider -----------------------------------------------------------------


class SesProvider(HttpProvider):
    """SES v2 SendEmail with raw content, one signed request per message."""

    name = "ses"
    # SES has no multi-recipient raw send; a push is a run of single calls kept short
    # so a stop request or a crash loses little.
    max_batch = 50
    idempotent = False

    # base_url empty: the region's endpoint, email.<region>.amazonaws.com
    settings_schema = api_schema("", region=Key(str, "us-east-1"), configuration_set=Key(str, ""))
    secrets = (ACCESS_KEY_ENV, SECRET_KEY_ENV, SESSION_TOKEN_ENV)

    def __init__(self, setup: ProviderSetup, clock: Callable[[], datetime] | None = None):
        self.region = str(setup.table["region"] or "us-east-1")
        super().__init__(setup)
        self.configuration_set = str(setup.table["configuration_set"])
        self._access_key = require_secret(setup, ACCESS_KEY_ENV, self.name)
        self._secret_key = require_secret(setup, SECRET_KEY_ENV, self.name)
        self._session_token = setup.secret(SESSION_TOKEN_ENV) or None
        self._clock = clock or (lambda: datetime.now(UTC))

    def _base_url(self, setup: ProviderSetup) -> str:
        return str(setup.table["base_url"]) or f"https://email.{self.region}.amazonaws.com"

    # SES v2 GetAccount: read-only, signed like SendEmail.
    credentials_path = "/v2/email/account"

    def _credentials_headers(self, url: str) -> dict[str, str]:
        return self._signed("GET", url, {}, b"")

    def _signed(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> dict[str, str]:
        """The SigV4 headers of one request, with this provider's keys, region and clock."""
        return sign_v4(
            method,
            url,
            headers,
            body,
            access_key=self._access_key,
            secret_key=self._secret_key,
            region=self.region,
            service=SERVICE,
            when=self._clock(),
            session_token=self._session_token,
        )

    def request_body(self, m: OutgoingMessage) -> bytes:
        """The SendEmail JSON for one message."""
        body: dict[str, Any] = {
            "Content": {"Raw": {"Data": base64.b64encode(m.raw).decode("ascii")}},
            "Destination": {"ToAddresses": [m.to_address]},
        }
        if self.configuration_set:
            body["ConfigurationSetName"] = self.configuration_set
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    def _send(self, m: OutgoingMessage) -> requests.Response | Failure:
        assert self.session is not None
        url = self.api.base_url + PATH
        body = self.request_body(m)
        headers = {"Content-Type": "application/json"}
        headers.update(self._signed("POST", url, headers, body))
        return post(
            self.session,
            url,
            timeout=self.api.timeout,
            provider=self.name,
            data=body,
            headers=headers,
        )

    def _push(self, batch: list[OutgoingMessage]) -> list[Result]:
        results: list[Result] = []
        for i, m in enumerate(batch):
            try:
                answer = self._send(m)
            except ProviderUnavailable as exc:
                if not results:
                    raise
                return results + _left(batch[i:], Fate.NOT_TAKEN, "", str(exc))
            if isinstance(answer, Failure):
                # The endpoint is not answering: do not wait out a timeout per message.
                results.append(answer.result(m))
                return results + _left(
                    batch[i + 1 :], Fate.NOT_TAKEN, "", "an earlier request failed"
                )
            if answer.status_code == 200:
                data = body_json(answer)
                mid = str(data.get("MessageId") or "") if isinstance(data, dict) else ""
                results.append(Result.sent(m.key, mid or None))
                continue
            code, text = error_code(answer)
            what = f"{code or 'HTTP error'}: {text}" if text else (code or detail(answer))
            if code in CREDENTIALS or answer.status_code in (401, 403):
                if not results:
                    raise ProviderError(
                        f"ses: the credentials in {ACCESS_KEY_ENV}/"
                        f"{SECRET_KEY_ENV} were refused ({what})"
                    )
                return results + _left(batch[i:], Fate.SENDER, code, f"credentials refused: {text}")
            if code in ACCOUNT or (code == "MessageRejected" and _UNVERIFIED.search(text)):
                if not results:
                    raise ProviderError(f"ses: the account or sender cannot send ({what})")
                return results + _left(batch[i:], Fate.SENDER, code, f"cannot send: {text}")
            label = f"ses {code}" if code else f"HTTP {answer.status_code}"
            # A body that is not SES's JSON (a proxy's 502 page) still says something.
            said = text or " ".join((answer.text or "").split())[:300]
            reason = scrub(unaddressed(said), m.to_address)
            if code in THROTTLED or answer.status_code == 429:
                # Slow down now: the rest of this push waits for the next round.
                results.append(Result.temporary(m.key, f"rate limited: {reason}", label))
                held = Failure(Fate.NOT_TAKEN, label, f"rate limited: held back after {code}")
                return results + held.results(batch[i + 1 :])
            if code in PERMANENT:
                results.append(Result.permanent(m.key, reason, label))
                continue
            fate = Fate.TRANSIENT if is_transient_status(answer.status_code) else Fate.PERMANENT
            results.append(Result(m.key, fate, code=label, reason=reason))
        return results


def error_code(answer: requests.Response) -> tuple[str, str]:
    """The SES error type and message, from ``x-amzn-ErrorType`` or the JSON body."""
    data = body_json(answer)
    data = data if isinstance(data, dict) else {}
    raw = (
        answer.headers.get("x-amzn-ErrorType")
        or data.get("__type")
        or data.get("code")
        or data.get("Code")
        or ""
    )
    code = str(raw).split(":", 1)[0].rsplit("#", 1)[-1].strip()
    text = str(data.get("message") or data.get("Message") or "")
    return code, " ".join(text.split())[:300]


def _left(rest: list[OutgoingMessage], fate: Fate, code: str, why: str) -> list[Result]:
    """The messages of a push never handed over, with the fate that says why."""
    return Failure(fate, code, f"not sent: {why}").results(rest)
