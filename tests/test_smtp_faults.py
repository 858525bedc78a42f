"""The fault-injecting SMTP server itself, driven by plain smtplib: each fault does
what it says, and ``received`` holds exactly what got past the final dot."""

from __future__ import annotations

import smtplib
import time

import pytest

from tests.smtp_faults import Fault

MESSAGE = b"Message-ID: <m1@example.com>\r\nSubject: hi\r\n\r\n.dot-led line\r\nbody\r\n"


def _client(server, timeout: float = 5.0) -> smtplib.SMTP:
    conn = smtplib.SMTP(server.host, server.port, timeout=timeout)
    conn.ehlo()
    return conn


def test_received_counts_copies_per_recipient_and_message_id(faulty_smtp):
    conn = _client(faulty_smtp)
    conn.sendmail("editor@example.com", ["a@example.com"], MESSAGE)
    conn.sendmail("editor@example.com", ["a@example.com", "b@example.com"], MESSAGE)
    conn.quit()
    assert faulty_smtp.per_recipient() == {"a@example.com": 2, "b@example.com": 1}
    assert faulty_smtp.twice() == {"a@example.com": 2}
    assert faulty_smtp.message_ids() == {"<m1@example.com>": 2}
    # dot-stuffing undone: the body is what the client meant
    assert b"\r\n.dot-led line\r\n" in faulty_smtp.received[0].data


def test_rcpt_replies_are_scripted_per_address_and_logged(faulty_smtp):
    faulty_smtp.answer_rcpt("full@example.com", "452 4.2.2 Mailbox full", times=1)
    conn = _client(faulty_smtp)
    conn.mail("editor@example.com")
    assert conn.rcpt("full@example.com") == (452, b"4.2.2 Mailbox full")
    assert conn.rcpt("full@example.com")[0] == 250
    conn.quit()
    assert faulty_smtp.rcpt_tries("full@example.com") == ["452 4.2.2 Mailbox full", "250 2.1.5 OK"]


def test_drop_mid_data_closes_before_the_dot_and_keeps_nothing(faulty_smtp):
    faulty_smtp.fault("a@example.com", Fault.DROP_MID_DATA)
    conn = _client(faulty_smtp)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        conn.sendmail("editor@example.com", ["a@example.com"], MESSAGE + b"line\r\n" * 5000)
    assert faulty_smtp.count() == 0


def test_drop_after_the_dot_keeps_the_message_but_never_answers(faulty_smtp):
    faulty_smtp.fault("a@example.com", Fault.DROP_AFTER_DOT)
    conn = _client(faulty_smtp)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        conn.sendmail("editor@example.com", ["a@example.com"], MESSAGE)
    (got,) = faulty_smtp.received
    assert got.recipients == ("a@example.com",) and not got.answered


def test_stall_after_the_dot_outlasts_the_client_timeout(faulty_smtp):
    faulty_smtp.stall = 3.0
    faulty_smtp.fault("a@example.com", Fault.STALL_AFTER_DOT)
    conn = _client(faulty_smtp, timeout=0.3)
    # smtplib reports its read timeout as a disconnect "timed out"
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        conn.sendmail("editor@example.com", ["a@example.com"], MESSAGE)
    assert faulty_smtp.count() == 1 and not faulty_smtp.received[0].answered


def test_refused_connections_for_a_time_then_served_again(faulty_smtp):
    faulty_smtp.refuse_connections(0.4, reply="421 4.3.2 try later")
    with pytest.raises(smtplib.SMTPConnectError) as caught:
        _client(faulty_smtp)
    assert caught.value.smtp_code == 421
    faulty_smtp.refuse_connections(0.4, reply=None)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        _client(faulty_smtp)
    time.sleep(0.5)
    _client(faulty_smtp).quit()
    assert faulty_smtp.refused == 2 and faulty_smtp.connections == 1


def test_busy_answers_mail_from_for_a_time(faulty_smtp):
    faulty_smtp.busy(0.3, "451 4.3.0 try again later")
    conn = _client(faulty_smtp)
    assert conn.mail("editor@example.com")[0] == 451
    time.sleep(0.4)
    assert conn.mail("editor@example.com")[0] == 250
    conn.quit()


def test_after_n_messages_the_server_closes_and_refuses_reconnects(faulty_smtp):
    faulty_smtp.after_messages(2, refuse_for=0.5)
    conn = _client(faulty_smtp)
    conn.sendmail("editor@example.com", ["a@example.com"], MESSAGE)
    conn.sendmail("editor@example.com", ["b@example.com"], MESSAGE)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        conn.sendmail("editor@example.com", ["c@example.com"], MESSAGE)
    with pytest.raises(smtplib.SMTPConnectError):
        _client(faulty_smtp)
    time.sleep(0.6)
    _client(faulty_smtp).quit()
    assert faulty_smtp.count() == 2


def test_idle_connections_are_closed_with_a_421_like_postfix(faulty_smtp):
    faulty_smtp.idle_timeout = 0.2
    conn = _client(faulty_smtp)
    time.sleep(0.4)
    code, text = conn.mail("editor@example.com")
    assert code == 421 and b"timeout" in text
