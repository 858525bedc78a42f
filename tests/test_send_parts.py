"""The rate limiter, the backoff, and the provider registry."""

from __future__ import annotations

import threading

import pytest


def test_rate_limit_spaces_messages_exactly_across_threads():
    from pipeline.send.ratelimit import RateLimiter

    limiter = RateLimiter(50, clock=lambda: 0.0)
    waits = []
    lock = threading.Lock()

    def worker():
        for _ in range(25):
            w = limiter.reserve(1)
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 reservations at 50/s with the clock still at 0: one every 20 ms, none shared.
    assert sorted(round(w, 6) for w in waits) == [round(i / 50, 6) for i in range(100)]


def test_zero_rate_means_no_limit():
    from pipeline.send.ratelimit import RateLimiter

    limiter = RateLimiter(0, clock=lambda: 0.0)
    assert all(limiter.reserve(10) == 0 for _ in range(100))


def test_slow_down_halves_the_rate_for_a_while_then_recovers():
    from pipeline.send.ratelimit import RateLimiter

    t = [0.0]
    limiter = RateLimiter(100, clock=lambda: t[0])
    limiter.slow_down(factor=0.5, seconds=60)
    assert limiter.rate == 50
    t[0] = 61.0
    assert limiter.rate == 100


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    from pipeline.send import backoff

    for attempt, full in ((1, 30), (2, 60), (3, 120)):
        values = [backoff(attempt, 30, 1800) for _ in range(200)]
        assert all(full / 2 <= v <= full for v in values)
        assert len(set(values)) > 150
    assert backoff(20, 30, 1800) <= 1800


def test_registry_lists_builtins_and_names_the_key_for_unknown(settings):
    from pipeline.errors import ConfigError
    from pipeline.providers import available, load_provider

    names = available()
    assert {"outbox", "smtp"} <= set(names)
    assert load_provider(settings).name == "outbox"
    with pytest.raises(ConfigError, match=r"provider.name: unknown provider 'pigeon'"):
        load_provider(settings, "pigeon")


def test_smtp_without_tls_is_refused_off_loopback(project):
    from pipeline.config import load_settings
    from pipeline.errors import ConfigError
    from pipeline.providers import load_provider
    from tests.fixtures_send import set_keys

    set_keys(project, "provider.smtp", host='"mail.example.com"', tls='"none"')
    s = load_settings(project / "brief.toml", env={})
    with pytest.raises(ConfigError, match="provider.smtp.tls"):
        load_provider(s, "smtp")


def test_smtp_reuses_one_connection_and_reconnects_after_a_drop(project, smtp_sink):
    from pipeline.config import load_settings
    from pipeline.providers import load_provider
    from pipeline.send.message import MessageFactory
    from tests.fixtures_send import use_smtp
    from tests.test_message_build import _rendered, _values

    use_smtp(project, smtp_sink)
    s = load_settings(project / "brief.toml", env={})
    provider = load_provider(s)
    f = MessageFactory(_rendered(), s, commit="x")
    msgs = [f.build(f"k{i}", f"r{i}@example.com", None, _values()) for i in range(6)]
    smtp_sink.rules["r3@example.com"] = ["drop-rcpt"]
    provider.open()
    results = provider.push(msgs)
    provider.close()
    assert [r.ok for r in results] == [True, True, True, False, True, True]
    assert results[3].transient and "before the message was sent" in results[3].reason
    assert provider.connects == 2
    assert "r3@example.com" not in smtp_sink.received and smtp_sink.count() == 5
