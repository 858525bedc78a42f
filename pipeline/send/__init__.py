"""Sending: a campaign through the ledger (``campaign``), its workers (``workers``), the
judging of provider answers (``outcomes``), one-off mails outside the ledger
(``oneoff``) and stopping by signal (``signals``)."""

from __future__ import annotations

from pipeline.errors import SendStopped
from pipeline.send.campaign import (
    CampaignReport,
    Plan,
    Progress,
    check_sendable,
    dry_run,
    plan,
    render,
    send_campaign,
)
from pipeline.send.oneoff import send_one, send_test
from pipeline.send.outcomes import backoff
from pipeline.send.signals import stop_on_signals
from pipeline.send.workers import delivery_key

# `brief send` exits with this when a signal stopped it cleanly: run it again to resume.
EXIT_STOPPED = SendStopped.exit_code

__all__ = [
    "EXIT_STOPPED",
    "CampaignReport",
    "Plan",
    "Progress",
    "backoff",
    "check_sendable",
    "delivery_key",
    "dry_run",
    "plan",
    "render",
    "send_campaign",
    "send_one",
    "send_test",
    "stop_on_signals",
]
