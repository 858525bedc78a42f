"""What the HTTP API providers share: a session, timeouts, and failure classification.

Each provider module (postmark, sendgrid, mailgun, ses, resend) builds its own
request body and reads its own error codes; everything that is the same for all
of them lives here once: the ``requests.Session`` with a User-Agent, the POST
that tells "never reached the service" from "the answer was lost", the
status-code rule (429 and 5xx are transient, other 4xx permanent, 401/403 mean
the whole provider is unusable), the fan-out of one failure to a batch with the
addresses taken out of its reason, and what a provider's answer may ask of the
push: fail the recipients it names and send the rest again (``Refused``), or
halve the batch (``Split``), within a bounded number of extra requests.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from pipeline import __version__
from pipeline.errors import ProviderError, ProviderUnavailable
from pipeline.mail import PLACEHOLDERS
from pipeline.providers.base import (
    TIMEOUT_KEY,
    Fate,
    Key,
    OutgoingMessage,
    ProviderSetup,
    Result,
    scrub,
)

USER_AGENT = f"Brief/{__version__} (newsletter pipeline; python-requests/{requests.__version__})"

# Headers every API sets from its own fields (from, to, subject…); passing them
# again as custom headers is refused by some services and duplicated by others.
API_OWNED_HEADERS = frozenset(
    {
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "sender",
        "return-path",
    }
)

# The custom field that carries the delivery key, so webhooks can map events back.
KEY_FIELD = "brief_key"

_DETAIL_LIMIT = 300


@dataclass(frozen=True)
class ApiConfig:
    """One provider's endpoint settings, read once from its brief.toml table."""

    name: str
    base_url: str
    timeout: float


# Anything that looks like an address, for texts that may name any recipient of a batch.
_ADDRESS = re.compile(r"[^\s<>'\"(),;:]+@[^\s<>'\"(),;:]+")


def unaddressed(text: str) -> str:
    """A provider's text with every address in it replaced, so failures group by cause."""
    return _ADDRESS.sub("<address>", " ".join(text.split()))


@dataclass(frozen=True)
class Failure:
    """A failure that applies to every message of one request: its fate and its cause."""

    fate: Fate
    code: str
    reason: str
    suppress: bool = False

    def result(self, message: OutgoingMessage) -> Result:
        """This failure as the Result of one message (its address never in the reason)."""
        reason = scrub(unaddressed(self.reason), message.to_address)
        return Result(message.key, self.fate, code=self.code, reason=reason, suppress=self.suppress)

    def results(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """This failure as the Result of each message, in order."""
        return [self.result(m) for m in messages]


@dataclass(frozen=True)
class Refused:
    """The whole request was refused because of some of its recipients: nobody got it.

    ``blamed`` maps the index of each recipient at fault to its own Result; the
    others were not taken and go again at once, without them.
    """

    blamed: Mapping[int, Result]


@dataclass(frozen=True)
class Split:
    """The request was refused as too large, or for one recipient it does not name.

    The batch is cut in halves and each half sent again; a single message that is
    still refused gets ``alone`` (the refusal then is its own).
    """

    alone: Failure


# What a provider's one request may answer: a Result per message, or a directive.
Answer = list[Result] | Refused | Split


def api_schema(base_url: str, **more: Key) -> dict[str, Key]:
    """The settings every HTTP API provider has (its endpoint and timeout), and ``more``."""
    return {"base_url": Key(str, base_url, url=True), "timeout": TIMEOUT_KEY, **more}


def api_config(setup: ProviderSetup, base_url: str | None = None) -> ApiConfig:
    """The base URL (without a trailing slash) and timeout of the provider set up."""
    name, table = setup.name, setup.table
    url = (base_url if base_url is not None else str(table["base_url"])).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ProviderError(f"{name}: provider.{name}.base_url must be an http(s) URL, got {url!r}")
    timeout = float(table["timeout"])
    if timeout <= 0:
        raise ProviderError(f"{name}: provider.{name}.timeout must be more than zero seconds")
    return ApiConfig(name, url, timeout)


def require_secret(setup: ProviderSetup, env_name: str, provider: str) -> str:
    """A credential from the environment, or a ProviderError naming the variable."""
    value = setup.secret(env_name)
    if not value:
        raise ProviderError(
            f"{provider}: set the environment variable {env_name} "
            f"(the {provider} API key is never read from brief.toml)"
        )
    return value


def make_session() -> requests.Session:
    """A session with Brief's User-Agent and JSON accepted; one per provider instance."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the request cannot have reached the service (no connection was made)."""
    # TLS and proxy failures happen before the request is written, too.
    if isinstance(
        exc, requests.ConnectTimeout | requests.exceptions.SSLError | requests.exceptions.ProxyError
    ):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3 wraps it in MaxRetryError
    return isinstance(reason, NewConnectionError)


def post(
    session: requests.Session,
    url: str,
    *,
    timeout: float,
    provider: str = "http",
    **kwargs: Any,
) -> requests.Response | Failure:
    """POST with a timeout always set; what can go wrong on the way becomes explicit.

    No connection at all (refused, unresolvable, connect timeout) raises
    ProviderUnavailable: nothing was handed over, the provider is unreachable.
    A lost answer (read timeout, connection dropped mid-request) is ambiguous: the
    service may have accepted the mail, so its fate is UNKNOWN. A provider with an
    idempotency key repeats the identical request itself before settling for that.
    """
    try:
        return session.post(url, timeout=timeout, **kwargs)
    except requests.ConnectionError as exc:
        if _never_connected(exc):
            raise ProviderUnavailable(
                f"{provider}: cannot connect to {_host(url)} ({type(exc).__name__})"
            ) from None
        return Failure(Fate.UNKNOWN, "connection lost", "connection lost before the answer")
    except requests.Timeout:
        return Failure(Fate.UNKNOWN, "timeout", f"no answer within {timeout:g}s")


def _host(url: str) -> str:
    return urlsplit(url).netloc


def body_json(response: requests.Response) -> Any:
    """The response body as JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


def detail(response: requests.Response, text: str | None = None) -> str:
    """A short, single-line description of a failed response for the ledger."""
    body = text if text is not None else response.text
    body = " ".join((body or "").split())
    if len(body) > _DETAIL_LIMIT:
        body = body[:_DETAIL_LIMIT] + "…"
    return f"HTTP {response.status_code}" + (f": {body}" if body else "")


def is_transient_status(status: int) -> bool:
    """429 (rate limited), 408 and every 5xx are worth retrying; other 4xx are not."""
    return status in (408, 429) or status >= 500


def status_failure(response: requests.Response, text: str | None = None) -> Failure:
    """The generic mapping of a non-success HTTP status, used after each API's own codes.

    429 reads "rate limited: …" so the send loop lowers its rate for a while.
    """
    status = response.status_code
    body = " ".join((text if text is not None else response.text or "").split())
    if len(body) > _DETAIL_LIMIT:
        body = body[:_DETAIL_LIMIT] + "…"
    code = f"HTTP {status}"
    if status == 429:
        return Failure(Fate.TRANSIENT, code, f"rate limited: {body}".rstrip(": "))
    fate = Fate.TRANSIENT if is_transient_status(status) else Fate.PERMANENT
    return Failure(fate, code, body)


def refuse_credentials(
    provider: str, env_name: str, response: requests.Response, text: str | None = None
) -> ProviderError:
    """The error for a refused API key: names the variable, never shows the key."""
    return ProviderError(
        f"{provider}: the credentials in {env_name} were refused ({detail(response, text)})"
    )


def custom_headers(*sources: Mapping[str, str]) -> dict[str, str]:
    """Merge header mappings, leaving out those the API sets from its own fields."""
    merged: dict[str, str] = {}
    for source in sources:
        for name, value in source.items():
            if name.lower() not in API_OWNED_HEADERS:
                merged[name] = value
    return merged


def to_field(message: OutgoingMessage) -> str:
    """The recipient as ``Name <address>``, as the message's own To header has it."""
    to = message.headers.get("To")
    if to:
        return to
    from email.utils import formataddr

    return formataddr((message.to_name or "", message.to_address))


def from_field(message: OutgoingMessage) -> str:
    """The sender as ``Name <address>``."""
    from email.utils import formataddr

    c = message.content
    return formataddr((c.from_name, c.from_address)) if c.from_name else c.from_address


def placeholders() -> Mapping[str, str]:
    """Placeholder name -> marker in the rendered html/text (the mail contract)."""
    return PLACEHOLDERS


def retarget(template: str, markers: Mapping[str, str]) -> str:
    """Replace each render marker in ``template`` by the provider's own token for it."""
    for marker, token in markers.items():
        template = template.replace(marker, token)
    return template


def html_value(value: str) -> str:
    """A value as it goes into HTML: escaped, as MessageFactory does for its html part."""
    return html.escape(value, quote=True)


def json_part(message: OutgoingMessage, which: str) -> list[bytes]:
    """The message's ``html`` or ``text`` part as a JSON string literal (UTF-8), in
    pieces to join into the request body.

    A message from ``MessageFactory`` gives the part's pieces escaped once per issue
    and its values (``json_pieces``): the body is then the only copy of the part;
    any other message gets ``json.dumps`` of the part.
    """
    pieces = getattr(message, "json_pieces", None)
    if pieces is not None:
        return pieces(which)
    return [json.dumps(getattr(message, which), ensure_ascii=False).encode("utf-8")]


# One encoder for the small per-message fields (json.dumps with options builds one a call).
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def json_object(fields: Mapping[str, Any], parts: Mapping[str, list[bytes]]) -> list[bytes]:
    """One JSON object as pieces to join: ``parts`` (names -> JSON values in pieces,
    encoded already) then ``fields``. Pieces, so that a whole batch is joined once."""
    rest = _COMPACT.encode(fields).encode("utf-8")
    out: list[bytes] = []
    for k, v in parts.items():
        out += (b"," if out else b"{", _COMPACT.encode(k).encode("utf-8"), b":", *v)
    if not out:
        return [rest]
    out.append(b"," + rest[1:] if rest != b"{}" else b"}")
    return out


def json_array(elements: Iterable[list[bytes]]) -> bytes:
    """A JSON array of elements given as pieces, joined in one copy."""
    out = [b"["]
    for element in elements:
        if len(out) > 1:
            out.append(b",")
        out += element
    out.append(b"]")
    return b"".join(out)


def compact_json(value: Any) -> str:
    """JSON without spaces, for form fields that carry JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _paused(result: Result, cause: Failure) -> Result:
    reason = f"refused for too many recipients to single out: {cause.reason}"
    return Result(result.key, Fate.SENDER, code=cause.code, reason=reason)


class HttpProvider:
    """The lifecycle every HTTP API provider shares: settings, one session, open/close.

    Subclasses set ``name``, ``max_batch``, ``idempotent`` and implement ``_push``.
    Credentials are checked when the provider is built, so a missing variable is
    reported before any recipient is touched.
    """

    name = "http"
    max_batch = 1
    idempotent = False

    def __init__(self, setup: ProviderSetup):
        self.setup = setup
        self.api = api_config(setup, self._base_url(setup))
        self.session: requests.Session | None = None
        self._extra_left = 0
        self._alone: dict[str, Failure] = {}  # refused alone during this push, by key

    def _base_url(self, setup: ProviderSetup) -> str | None:
        """The base URL when it is not simply the table's ``base_url`` (SES by region)."""
        return None

    def _prepare(self, session: requests.Session) -> None:
        """Add the provider's authentication to a new session."""

    # A read-only endpoint that needs the credentials (``brief doctor``); "" for none.
    credentials_path = ""

    def check_credentials(self) -> str:
        """GET ``credentials_path``: 2xx means the credentials work; 401/403 is a
        ProviderError saying they were refused, anything else one saying what came."""
        if not self.credentials_path:
            raise ProviderError(f"{self.name}: no read-only endpoint to check credentials with")
        self.open()
        assert self.session is not None
        url = f"{self.api.base_url}{self.credentials_path}"
        try:
            response = self.session.get(
                url, timeout=self.api.timeout, headers=self._credentials_headers(url)
            )
        except requests.RequestException as exc:
            raise ProviderUnavailable(
                f"{self.name}: cannot reach {_host(url)} ({type(exc).__name__})"
            ) from None
        if response.status_code in (401, 403):
            raise ProviderError(
                f"{self.name}: GET {self.credentials_path} answered {response.status_code}: "
                f"the credentials were refused ({detail(response)})"
            )
        if not 200 <= response.status_code < 300:
            raise ProviderError(
                f"{self.name}: GET {self.credentials_path} answered {response.status_code} "
                f"({detail(response)})"
            )
        return f"GET {self.credentials_path} answered {response.status_code}"

    def _credentials_headers(self, url: str) -> dict[str, str]:
        """Headers the credentials check needs beyond the session's (a signature)."""
        return {}

    def open(self) -> None:
        """Create the session (one per provider instance, so one per worker)."""
        if self.session is None:
            self.session = make_session()
            self._prepare(self.session)

    def close(self) -> None:
        """Close the session; safe to call twice."""
        if self.session is not None:
            self.session.close()
            self.session = None

    def push(self, messages: Sequence[OutgoingMessage]) -> list[Result]:
        """Hand over at most ``max_batch`` messages; one Result per message, in order."""
        batch = list(messages)
        if not batch:
            return []
        if len(batch) > self.max_batch:
            raise ProviderError(
                f"{self.name}: {len(batch)} messages in one push; "
                f"the API takes at most {self.max_batch}"
            )
        self.open()
        # Requests a push may add to single out refused recipients or halve a batch
        # too large: plenty for a few bad addresses among 1000, not one per recipient
        # when the refusal is really about every one of them (then: pause).
        self._extra_left = 8 * max(2, math.ceil(math.log2(len(batch))))
        self._alone = {}
        results = self._deliver(batch)
        everyone = len(batch) > 1 and len(self._alone) == len(batch)
        if self._alone and (self._extra_left <= 0 or everyone):
            # Too many refused to single out, or every one refused alone: the refusal is
            # about us, not them; none of those refused alone is written off.
            results = [
                _paused(r, self._alone[r.key]) if r.key in self._alone else r for r in results
            ]
        if len(results) != len(batch):  # a bug here would silently lose recipients
            raise ProviderError(f"{self.name}: {len(results)} results for {len(batch)} messages")
        return results

    def _deliver(self, batch: list[OutgoingMessage]) -> list[Result]:
        """One request, and what its answer asks for: the rest again, or the halves."""
        answer = self._push(batch)
        if isinstance(answer, Refused):
            rest = [m for i, m in enumerate(batch) if i not in answer.blamed]
            cause = next(iter(answer.blamed.values()))
            again = iter(self._in_turn([rest], Failure(Fate.SENDER, cause.code, cause.reason)))
            return [
                answer.blamed[i] if i in answer.blamed else next(again) for i in range(len(batch))
            ]
        if isinstance(answer, Split):
            if len(batch) == 1:
                self._alone[batch[0].key] = answer.alone
                return [answer.alone.result(batch[0])]
            half = len(batch) // 2
            why = Failure(Fate.SENDER, answer.alone.code, answer.alone.reason)
            return self._in_turn([batch[:half], batch[half:]], why)
        return answer

    def _in_turn(self, parts: list[list[OutgoingMessage]], cause: Failure) -> list[Result]:
        """Deliver each part in turn; once anything has a result, a provider-wide
        refusal or outage becomes the fate of what is left instead of losing it.
        With the push's extra requests used up, what is left pauses with ``cause``."""
        out: list[Result] = []
        for n, part in enumerate(parts):
            if not part:
                continue
            if self._extra_left <= 0:
                left = [m for p in parts[n:] for m in p]
                many = f"refused for too many recipients to single out: {cause.reason}"
                out += Failure(Fate.SENDER, cause.code, many).results(left)
                break
            self._extra_left -= 1
            try:
                out += self._deliver(part)
            except (ProviderError, ProviderUnavailable) as exc:
                if not out:
                    raise
                fate = Fate.NOT_TAKEN if isinstance(exc, ProviderUnavailable) else Fate.SENDER
                left = [m for p in parts[n:] for m in p]
                out += Failure(fate, "", f"not sent: {exc}").results(left)
                break
        return out

    def _push(self, batch: list[OutgoingMessage]) -> Answer:
        """One request for ``batch``: a Result per message, or Refused / Split."""
        raise NotImplementedError

    def _post(self, path: str, **kwargs: Any) -> requests.Response | Failure:
        assert self.session is not None
        return post(
            self.session,
            self.api.base_url + path,
            timeout=self.api.timeout,
            provider=self.name,
            **kwargs,
        )
