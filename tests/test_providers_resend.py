"""Resend's idempotent batches made honest (issue 9, item 4).

A lost answer is followed by the *identical* request (same recipients, same
Idempotency-Key, same bytes) inside ``push``; when it still has no answer the fate
is UNKNOWN, never a regrouped resend. Resend answers a repeat of a key with a
different body ``invalid_idempotent_request`` (409): that is never a permanent
failure of the recipients. Rebuilding the messages (a resume in a new process)
gives the same bytes, because the Message-ID derives from the delivery key.
Resend's shapes follow its docs: "Send Batch Emails", "Idempotency keys" and
"Errors" (resend.com/docs/api-reference/emails/send-batch-emails,
resend.com/docs/dashboard/emails/idempotency-keys, resend.com/docs/api-reference/errors).
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from werkzeug import Response

from pipeline.providers.base import Fate
from pipeline.providers.resend import ResendProvider, key_from_tag, tag_value
from tests.fixtures_providers import setup_of

REAL_KEY = "issue-001.subscriber-7"  # pipeline.send.delivery_key(1, 7)


def _resend(http_settings, **table):
    table = {"retries": 2, "retry_backoff": 0.01, **table}
    provider = ResendProvider(setup_of(http_settings("resend", **table)))
    provider.open()
    return provider


class LosesAnswers:
    """Resend with a bad network: the first ``lose`` answers never arrive in time.

    Like Resend, it keeps the first answer per Idempotency-Key and creates nothing new
    for a repeat; a repeat with another body gets ``invalid_idempotent_request``.
    """

    def __init__(self, lose: int, stall: float = 0.3):
        self.lose = lose
        self.stall = stall
        self.bodies: dict[str, bytes] = {}
        self.answers: dict[str, dict] = {}
        self.created = 0
        self.seen: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, request):
        key = request.headers.get("Idempotency-Key", "")
        body = request.get_data()
        with self.lock:
            self.seen.append((key, body))
            if key in self.bodies and self.bodies[key] != body:
                return Response(
                    json.dumps(
                        {
                            "statusCode": 409,
                            "name": "invalid_idempotent_request",
                            "message": "Same idempotency key used with a different request "
                            "payload. Change your idempotency key or payload.",
                        }
                    ),
                    status=409,
                    content_type="application/json",
                )
            if key not in self.answers:
                emails = json.loads(body)
                self.bodies[key] = body
                self.answers[key] = {
                    "data": [{"id": f"re-{self.created + i}"} for i in range(len(emails))]
                }
                self.created += len(emails)
            lost = len(self.seen) <= self.lose
        if lost:
            time.sleep(self.stall)  # the client gave up: accepted, but the answer is lost
        return Response(json.dumps(self.answers[key]), content_type="application/json")


def test_a_lost_answer_is_retried_with_the_identical_request(
    http_settings, http_messages, httpserver
):
    fake = LosesAnswers(lose=1)
    httpserver.expect_request("/emails/batch").respond_with_handler(fake)
    # The loopback server answers one request at a time: the backoff outlasts the stall.
    provider = _resend(http_settings, timeout=0.15, retry_backoff=0.4)
    msgs = http_messages(http_settings.last)
    results = provider.push(msgs)

    assert [r.provider_id for r in results] == ["re-0", "re-1", "re-2"]
    assert all(r.fate is Fate.SENT for r in results)
    assert len(fake.seen) == 2 and fake.seen[0] == fake.seen[1]  # same key, same bytes
    assert fake.created == 3  # nobody mailed twice


def test_an_answer_lost_every_time_is_unknown_after_the_bounded_retries(
    http_settings, http_messages, httpserver
):
    fake = LosesAnswers(lose=100)
    httpserver.expect_request("/emails/batch").respond_with_handler(fake)
    provider = _resend(http_settings, timeout=0.15, retries=2, retry_backoff=0.4)
    msgs = http_messages(http_settings.last)
    results = provider.push(msgs)
    assert [r.fate for r in results] == [Fate.UNKNOWN] * 3
    assert results[0].code == "timeout" and "0.15s" in results[0].reason
    assert len(fake.seen) == 3 and len(set(fake.seen)) == 1


@pytest.mark.parametrize("name", ["invalid_idempotent_request", "concurrent_idempotent_requests"])
def test_idempotency_conflicts_are_never_a_permanent_failure(
    name, http_settings, http_messages, httpserver
):
    httpserver.expect_request("/emails/batch").respond_with_json(
        {"statusCode": 409, "name": name, "message": f"about {name}"}, status=409
    )
    provider = _resend(http_settings)
    results = provider.push(http_messages(http_settings.last))
    # The first request under this key may have been accepted: the loop must not
    # regroup these rows under a new key; the operator decides (--retry-unknown).
    assert [r.fate for r in results] == [Fate.UNKNOWN] * 3
    assert name in results[0].label


def test_a_rebuilt_batch_is_the_same_request_byte_for_byte(
    http_settings, http_messages, httpserver
):
    fake = LosesAnswers(lose=0)
    httpserver.expect_request("/emails/batch").respond_with_handler(fake)
    provider = _resend(http_settings)
    first = provider.push(http_messages(http_settings.last))
    time.sleep(1.1)  # a later second: the Date header would differ, if it were sent
    again = provider.push(http_messages(http_settings.last))  # a new factory, as a resume
    assert fake.seen[0] == fake.seen[1]
    assert [r.provider_id for r in again] == [r.provider_id for r in first]
    assert fake.created == 3


def test_the_message_id_derives_from_the_delivery_key(http_settings, http_messages):
    settings = http_settings("resend")
    a, b = http_messages(settings), http_messages(settings)
    assert [m.headers["Message-ID"] for m in a] == [m.headers["Message-ID"] for m in b]
    assert len({m.headers["Message-ID"] for m in a}) == 3
    assert a[0].headers["Message-ID"].startswith("<c7-d0.")


def test_real_delivery_keys_travel_as_tags_and_come_back(http_settings, httpserver):
    from pipeline.render.issue import Rendered
    from pipeline.send.message import MessageFactory
    from tests.fixtures_providers import SAMPLE_HTML, SAMPLE_TEXT

    provider = _resend(http_settings)
    settings = http_settings.last
    rendered = Rendered(1, "Issue 1", "p", SAMPLE_HTML, SAMPLE_TEXT, "https://x/issues/001/")
    values = {"name": "A", "unsubscribe_url": "https://x/u/t", "preferences_url": "https://x/p/t"}
    msg = MessageFactory(rendered, settings, commit="0" * 40).build(
        REAL_KEY, "ada@example.org", "Ada", values
    )
    httpserver.expect_request("/emails/batch").respond_with_json({"data": [{"id": "re-1"}]})
    assert provider.push([msg])[0].ok
    email = httpserver.log[0][0].get_json()[0]
    # Resend tags: "ASCII letters, numbers, underscores, or dashes" only.
    (tag,) = email["tags"]
    assert tag["name"] == "brief_key"
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in tag["value"])
    assert tag["value"] == tag_value(REAL_KEY) and key_from_tag(tag["value"]) == REAL_KEY
    for key in ("issue-001.test-a1b2", "a_b.c-d", "x" * 80):
        assert key_from_tag(tag_value(key)) == key


class DropsFirst:
    """A loopback HTTP server that reads the first request whole and hangs up without
    an answer (the dropped connection), then answers like Resend."""

    def __init__(self, drops: int):
        import socketserver

        self.drops = drops
        self.requests: list[bytes] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    head += self.rfile.read(1)
                length = int(
                    next(
                        line.split(b":", 1)[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                )
                outer.requests.append(
                    head.split(b"\r\n\r\n")[0] + b"\n\n" + self.rfile.read(length)
                )
                if len(outer.requests) <= outer.drops:
                    return  # hang up: the request was read, no answer is sent
                body = json.dumps({"data": [{"id": f"re-{i}"} for i in range(3)]}).encode()
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _payload(raw: bytes) -> tuple[str, bytes]:
    head, body = raw.split(b"\n\n", 1)
    key = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"idempotency-key:")
    )
    return key, body


def test_a_dropped_connection_is_retried_with_the_identical_request(http_settings, http_messages):
    server = DropsFirst(drops=1)
    try:
        provider = _resend(http_settings, base_url=server.url)
        results = provider.push(http_messages(http_settings.last))
    finally:
        server.close()
    assert [r.provider_id for r in results] == ["re-0", "re-1", "re-2"]
    assert len(server.requests) == 2
    assert _payload(server.requests[0]) == _payload(server.requests[1])


def test_a_connection_dropped_every_time_is_unknown(http_settings, http_messages):
    server = DropsFirst(drops=100)
    try:
        provider = _resend(http_settings, base_url=server.url, retries=3)
        results = provider.push(http_messages(http_settings.last))
    finally:
        server.close()
    assert [r.fate for r in results] == [Fate.UNKNOWN] * 3
    assert results[0].code == "connection lost"
    assert len(server.requests) == 4 and len({_payload(r) for r in server.requests}) == 1
