"""What the SMTP provider makes of each server answer and fault, judged against the
fault-injecting server (tests/smtp_faults.py): issue 9, items 3, 4 and 7.

Reply codes follow RFC 5321 §4.2 (x yz: 4 = transient, 5 = permanent, 421 = the
server closes the channel) and the enhanced status codes of RFC 3463 (X.1.1 bad
mailbox, X.2.2 mailbox full, X.7.x security/policy). The idle answer is Postfix's:
smtpd answers a client idle past smtpd_timeout "421 4.4.2 <host> Error: timeout
exceeded" and closes (NetBSD/src external/ibm-public/postfix/dist/src/smtpd/smtpd.c).
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.fixtures_send import set_keys, subscribe_many, use_smtp
from tests.smtp_faults import Fault


def _provider(project, server, **smtp):
    from pipeline.config import load_settings
    from pipeline.providers import load_provider
    from pipeline.send.message import MessageFactory
    from tests.test_message_build import _rendered

    use_smtp(project, server)
    if smtp:
        set_keys(project, "provider.smtp", **smtp)
    settings = load_settings(project / "brief.toml", env={})
    return load_provider(settings), MessageFactory(_rendered(), settings, commit="x")


def _messages(factory, addresses):
    from tests.test_message_build import _values

    return [factory.build(f"k{i}", a, None, _values()) for i, a in enumerate(addresses)]


def _addresses(n: int, start: int = 1) -> list[str]:
    return [f"r{i}@example.com" for i in range(start, start + n)]


# ---------------------------------------------------------------------------
# Item 3: a reconnect that fails part-way through a push keeps the answers given


def test_reconnect_refused_mid_push_keeps_the_answers_already_given(project, faulty_smtp):
    from pipeline.providers.base import Fate

    faulty_smtp.after_messages(30, refuse_for=3.0, reply="421 4.3.2 service shutting down")
    provider, factory = _provider(project, faulty_smtp)
    msgs = _messages(factory, _addresses(50))
    provider.open()
    results = provider.push(msgs)  # no exception mid-list
    provider.close()
    assert [r.key for r in results] == [m.key for m in msgs]
    assert [r.fate for r in results] == [Fate.SENT] * 30 + [Fate.NOT_TAKEN] * 20
    assert results[30].code == "421 4.3.2" and "shutting down" in results[30].reason
    assert faulty_smtp.per_recipient() == {a: 1 for a in _addresses(30)}


def test_closed_socket_on_reconnect_mid_push_is_not_taken_for_the_rest(project, faulty_smtp):
    from pipeline.providers.base import Fate

    faulty_smtp.after_messages(5, refuse_for=3.0, reply=None)
    provider, factory = _provider(project, faulty_smtp)
    results = provider.push(_messages(factory, _addresses(8)))
    provider.close()
    assert [r.fate for r in results] == [Fate.SENT] * 5 + [Fate.NOT_TAKEN] * 3
    assert faulty_smtp.count() == 5


def test_sender_refused_at_mail_from_mid_push_is_a_sender_problem_for_the_rest(
    project, faulty_smtp
):
    from pipeline.providers.base import Fate

    faulty_smtp.after_messages(
        4, refuse_for=3.0, busy="550 5.7.1 <news@example.com>: Sender address rejected"
    )
    provider, factory = _provider(project, faulty_smtp)
    results = provider.push(_messages(factory, _addresses(10)))
    provider.close()
    assert [r.fate for r in results] == [Fate.SENT] * 4 + [Fate.SENDER] * 6
    assert results[4].code == "550 5.7.1" and "Sender address rejected" in results[4].reason
    assert faulty_smtp.count() == 4


def test_no_service_greeting_on_reconnect_mid_push_is_a_sender_problem_for_the_rest(
    project, faulty_smtp
):
    """RFC 5321 §3.1: a 554 greeting means "no SMTP service here" for this client:
    not an outage that passes, so the send pauses (SENDER), recipients untouched."""
    from pipeline.providers.base import Fate

    faulty_smtp.after_messages(3, refuse_for=3.0, reply="554 5.7.1 client host blocked")
    provider, factory = _provider(project, faulty_smtp)
    results = provider.push(_messages(factory, _addresses(5)))
    provider.close()
    assert [r.fate for r in results] == [Fate.SENT] * 3 + [Fate.SENDER] * 2
    assert results[3].code == "554 5.7.1" and results[3].reason == "client host blocked"


def test_sender_refused_for_the_whole_batch_raises_provider_error(project, faulty_smtp):
    """Nothing answered yet: the contract's other form, one error for the whole batch."""
    from pipeline.errors import ProviderError, ProviderUnavailable

    faulty_smtp.busy(3.0, "553 5.7.1 Sender address rejected: not owned by user")
    provider, factory = _provider(project, faulty_smtp)
    with pytest.raises(ProviderError, match="553 5.7.1") as caught:
        provider.push(_messages(factory, _addresses(3)))
    assert not isinstance(caught.value, ProviderUnavailable)
    provider.close()


def test_flapping_server_during_a_send_mails_nobody_twice(send_env, faulty_smtp):
    """Item 3 end to end: the server closes after every 30 messages and refuses
    reconnects for a moment; judged from what the server received."""
    faulty_smtp.after_messages(30, refuse_for=0.2, repeat=True)
    env = send_env(faulty_smtp, concurrency=2, batch_size=50, max_retries=20)
    emails = subscribe_many(env.engine, 120)
    stop = threading.Event()
    timer = threading.Timer(120, stop.set)  # resending what was accepted never ends
    timer.start()
    try:
        report = env.send(stop=stop)
    finally:
        timer.cancel()
    assert faulty_smtp.twice() == {}
    assert report.state == "sent" and report.sent == 120, (report.reason, report.failures)
    assert sorted(faulty_smtp.per_recipient()) == sorted(emails)


# ---------------------------------------------------------------------------
# Item 4: replies as classes: code + enhanced status, text without the address


def test_no_such_mailbox_is_permanent_with_its_class_apart_from_the_address(project, faulty_smtp):
    from pipeline.providers.base import Fate

    faulty_smtp.answer_rcpt(
        "r2@example.com",
        "550 5.1.1 <r2@example.com>: Recipient address rejected: User unknown in local table",
    )
    provider, factory = _provider(project, faulty_smtp)
    ok, gone = provider.push(_messages(factory, _addresses(2)))
    provider.close()
    assert ok.fate is Fate.SENT
    assert gone.fate is Fate.PERMANENT and gone.suppress
    assert gone.code == "550 5.1.1"
    assert gone.reason.endswith(": Recipient address rejected: User unknown in local table")
    assert "r2@example.com" not in gone.label


def test_mailbox_full_is_transient_with_its_class(project, faulty_smtp):
    from pipeline.providers.base import Fate

    faulty_smtp.answer_rcpt("r1@example.com", "452 4.2.2 Mailbox full")
    provider, factory = _provider(project, faulty_smtp)
    (full,) = provider.push(_messages(factory, _addresses(1)))
    provider.close()
    assert (full.fate, full.code, full.reason) == (Fate.TRANSIENT, "452 4.2.2", "Mailbox full")


def test_421_at_rcpt_is_transient_and_the_next_message_goes_on_a_new_connection(
    project, faulty_smtp
):
    from pipeline.providers.base import Fate

    faulty_smtp.answer_rcpt("r1@example.com", "421 4.7.0 too many errors", times=1)
    provider, factory = _provider(project, faulty_smtp)
    first, second = provider.push(_messages(factory, _addresses(2)))
    provider.close()
    assert first.fate is Fate.TRANSIENT and first.code == "421 4.7.0"
    assert second.fate is Fate.SENT
    assert faulty_smtp.connections == 2


def test_relay_denied_at_rcpt_is_a_sender_problem_not_the_recipients(project, faulty_smtp):
    """Postfix's "554 5.7.1 <x>: Relay access denied" says the account may not send
    here: every recipient would get it, so it pauses the send (SENDER)."""
    from pipeline.errors import ProviderError

    faulty_smtp.answer_rcpt("r1@example.com", "554 5.7.1 <r1@example.com>: Relay access denied")
    provider, factory = _provider(project, faulty_smtp)
    with pytest.raises(ProviderError, match="Relay access denied") as caught:
        provider.push(_messages(factory, _addresses(2)))
    assert "r1@example.com" not in str(caught.value)
    provider.close()


@pytest.mark.parametrize(
    ("stage", "reply", "fate", "code", "reason"),
    [
        ("RCPT", "550 5.1.1 no such user", "permanent", "550 5.1.1", "no such user"),
        ("RCPT", "450 4.2.1 mailbox busy", "transient", "450 4.2.1", "mailbox busy"),
        (
            "RCPT",
            "451 greylisted, come back later",
            "transient",
            "451",
            "greylisted, come back later",
        ),
        (
            "RCPT",
            "530 5.7.0 Authentication required",
            "sender",
            "530 5.7.0",
            "Authentication required",
        ),
        ("MAIL", "550 5.7.1 sender rejected", "sender", "550 5.7.1", "sender rejected"),
        (
            "MAIL",
            "452 4.3.1 insufficient system storage",
            "not_taken",
            "452 4.3.1",
            "insufficient system storage",
        ),
        ("DATA", "554 5.5.1 no valid recipients", "permanent", "554 5.5.1", "no valid recipients"),
        (
            "END",
            "554 5.7.1 message content rejected",
            "permanent",
            "554 5.7.1",
            "message content rejected",
        ),
        ("END", "552 5.3.4 message too big", "permanent", "552 5.3.4", "message too big"),
    ],
)
def test_reply_classes(stage, reply, fate, code, reason):
    from pipeline.providers.smtp import Reply, Stage, judge

    number, _, text = reply.partition(" ")
    result = judge(Stage[stage], Reply.parse(int(number), text.encode()), "k", "a@example.com")
    assert (result.fate.value, result.code, result.reason) == (fate, code, reason)


# ---------------------------------------------------------------------------
# Lost connections: before the dot nothing was delivered; after it, unknown


def test_drop_at_rcpt_is_transient_and_nothing_was_delivered(project, faulty_smtp):
    from pipeline.providers.base import Fate

    faulty_smtp.answer_rcpt("r1@example.com", "421 4.3.2 shutting down", times=1)
    provider, factory = _provider(project, faulty_smtp)
    first, second = provider.push(_messages(factory, _addresses(2)))
    provider.close()
    assert first.fate is Fate.TRANSIENT and second.fate is Fate.SENT
    assert faulty_smtp.per_recipient() == {"r2@example.com": 1}


def test_drop_mid_data_once_the_body_is_written_is_unknown_never_retried(project, faulty_smtp):
    """The body fits in the socket buffers, so the client has written the final dot
    before the server hangs up half-way through reading: from the client's side that
    is indistinguishable from a drop after the dot, and "unknown" is the only answer
    that cannot mail anyone twice (the server has nothing here; --retry-unknown is
    the operator's call)."""
    from pipeline.providers.base import Fate

    faulty_smtp.fault("r1@example.com", Fault.DROP_MID_DATA)
    provider, factory = _provider(project, faulty_smtp)
    (result,) = provider.push(_messages(factory, _addresses(1)))
    provider.close()
    assert result.fate is Fate.UNKNOWN
    assert faulty_smtp.count() == 0


@pytest.mark.parametrize("fault", [Fault.DROP_AFTER_DOT, Fault.STALL_AFTER_DOT])
def test_no_answer_after_the_final_dot_is_unknown_and_the_server_has_it(
    project, faulty_smtp, fault
):
    from pipeline.providers.base import Fate

    faulty_smtp.stall = 3.0
    faulty_smtp.fault("r1@example.com", fault)
    provider, factory = _provider(project, faulty_smtp, timeout=0.5)
    first, second = provider.push(_messages(factory, _addresses(2)))
    provider.close()
    assert first.fate is Fate.UNKNOWN and second.fate is Fate.SENT
    assert first.code == ("timeout" if fault is Fault.STALL_AFTER_DOT else "disconnected")
    assert faulty_smtp.per_recipient() == {"r1@example.com": 1, "r2@example.com": 1}


def test_stall_at_mail_from_past_the_read_timeout_is_transient_and_undelivered(
    project, faulty_smtp
):
    from pipeline.providers.base import Fate

    faulty_smtp.stall = 3.0
    provider, factory = _provider(project, faulty_smtp, timeout=0.5)
    provider.open()
    faulty_smtp.stall_mail(2)  # the open connection, then the one tried in its place
    first, second = provider.push(_messages(factory, _addresses(2)))
    provider.close()
    assert first.fate is Fate.TRANSIENT and first.code == "timeout"
    assert second.fate is Fate.SENT and faulty_smtp.per_recipient() == {"r2@example.com": 1}
    assert faulty_smtp.connections == 3


# ---------------------------------------------------------------------------
# Item 7: a retry after a long backoff must not go out on a connection dead while idle


@pytest.mark.parametrize("idle_reply", ["421 4.4.2 faulty.test Error: timeout exceeded", None])
def test_after_an_idle_timeout_the_retry_reaches_the_server_and_keeps_its_answer(
    project, faulty_smtp, idle_reply
):
    from pipeline.providers.base import Fate

    faulty_smtp.idle_timeout = 0.3
    faulty_smtp.idle_reply = idle_reply
    faulty_smtp.answer_rcpt("r1@example.com", "452 4.2.2 Mailbox full")
    provider, factory = _provider(project, faulty_smtp, idle_limit=0.1)
    full, ok = _messages(factory, _addresses(2))
    assert provider.push([full])[0].code == "452 4.2.2"
    time.sleep(0.6)  # the backoff outlives the server's idle timeout
    (again,) = provider.push([full])
    time.sleep(0.6)
    (other,) = provider.push([ok])
    provider.close()
    assert (again.fate, again.code, again.reason) == (Fate.TRANSIENT, "452 4.2.2", "Mailbox full")
    assert faulty_smtp.rcpt_tries("r1@example.com") == ["452 4.2.2 Mailbox full"] * 2
    assert other.fate is Fate.SENT


def test_a_connection_dead_at_the_first_command_is_replaced_once_even_within_the_idle_limit(
    project, faulty_smtp
):
    """The server's idle timeout is shorter than the configured idle limit: the dead
    connection shows at MAIL FROM, where nothing can have been delivered yet."""
    from pipeline.providers.base import Fate

    faulty_smtp.idle_timeout = 0.3
    faulty_smtp.idle_reply = None
    provider, factory = _provider(project, faulty_smtp, idle_limit=60)
    first, second = _messages(factory, _addresses(2))
    assert provider.push([first])[0].fate is Fate.SENT
    time.sleep(0.8)  # well past the server's 0.3 s, even on a loaded machine
    assert provider.push([second])[0].fate is Fate.SENT
    provider.close()
    assert faulty_smtp.connections == 2 and faulty_smtp.count() == 2


def test_soft_bounce_retried_past_idle_timeouts_records_the_servers_answer(send_env, faulty_smtp):
    """Item 7 end to end: one address answers 452 4.2.2 every time; the backoff
    between tries outlives the server's idle timeout; the ledger's reason is the 452."""
    from pipeline.store import ledger as lg

    faulty_smtp.idle_timeout = 0.2
    faulty_smtp.idle_reply = None
    faulty_smtp.answer_rcpt("reader2@example.com", "452 4.2.2 Mailbox full")
    env = send_env(faulty_smtp, concurrency=1, max_retries=1)
    subscribe_many(env.engine, 3)
    report = env.send(retry_base=0.6)
    assert report.sent == 2 and report.failed == 1
    campaign = lg.find_campaign(env.engine, 1, "main")
    ((_, email, state, reason),) = lg.failed_addresses(env.engine, campaign.id)
    assert (email, state) == ("reader2@example.com", "failed")
    assert "Mailbox full" in reason and "connection" not in reason
    assert faulty_smtp.rcpt_tries("reader2@example.com") == ["452 4.2.2 Mailbox full"] * 2


# ---------------------------------------------------------------------------
# The staged push: envelope and body while the row is marked in flight, then the dot


def _states_by_email(engine) -> dict[str, str]:
    import sqlalchemy as sa

    from pipeline.store.schema import deliveries, subscribers

    q = sa.select(subscribers.c.email, deliveries.c.state).join(
        subscribers, subscribers.c.id == deliveries.c.subscriber_id
    )
    with engine.connect() as conn:  # a connection of its own: only what is committed
        return {email: state for email, state in conn.execute(q)}


def test_the_server_gets_a_final_dot_only_once_its_row_is_committed_in_flight(
    send_env, faulty_smtp
):
    """The worker writes MAIL, RCPT, DATA and the body while the desk commits the row
    in flight; the final dot, what lets the server deliver, must wait for that commit,
    or a crash could leave a delivered message whose row goes back to pending."""
    env = send_env(faulty_smtp, concurrency=3, batch_size=10)
    emails = subscribe_many(env.engine, 30)
    at_dot: dict[str, str] = {}

    def on_dot(rcpts: tuple[str, ...]) -> None:
        states = _states_by_email(env.engine)
        at_dot.update({a: states[a] for a in rcpts})

    faulty_smtp.on_dot = on_dot
    report = env.send()
    assert report.state == "sent" and report.sent == 30
    assert at_dot == {a: "inflight" for a in emails}


def test_a_stop_while_messages_are_staged_delivers_none_of_them(send_env, faulty_smtp):
    """A stop refuses the go of messages already staged (body written, dot not): the
    worker leaves them without the dot, the server drops them, and their rows go back
    to pending. What the server kept is exactly what the ledger says was sent."""
    env = send_env(faulty_smtp, concurrency=3, batch_size=10)
    subscribe_many(env.engine, 60)
    stop = threading.Event()
    dots = []

    def on_dot(rcpts: tuple[str, ...]) -> None:
        dots.append(rcpts)
        if len(dots) == 8:
            stop.set()
            time.sleep(0.3)  # the other workers stage their next message meanwhile

    faulty_smtp.on_dot = on_dot
    report = env.send(stop=stop)
    states = _states_by_email(env.engine)
    assert report.stopped and 0 < report.sent < 60
    assert faulty_smtp.twice() == {}
    assert sorted(faulty_smtp.per_recipient()) == sorted(
        a for a, s in states.items() if s == "sent"
    )
    assert report.unknown == 0 and report.pending == 60 - report.sent
