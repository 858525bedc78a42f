"""A third party's Brief plug-ins, as a package of its own would ship them: a mail
provider and a webhook verifier, each with its own settings table and secrets.

``tests/fixtures_thirdparty.py`` installs this module with a ``*.dist-info`` naming it
in the ``brief.providers`` and ``brief.webhooks`` entry-point groups. It imports only
what Brief documents for plug-ins (``pipeline.plugins``, the mail contract, the
webhook event and call), never a built-in provider.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from pipeline.plugins import Key
from pipeline.providers.base import Result
from pipeline.webhooks.common import BadPayload, Event, Unverified

TOKEN_ENV = "ACME_TOKEN"
HOOK_ENV = "ACME_HOOK_SECRET"


class AcmeProvider:
    """Hands each message to "Acme" by writing a line to ``<spool>/sent.jsonl``: what it
    was built with, so a test can see the table and the secrets that reached it."""

    name = "acme"
    max_batch = 10
    idempotent = False
    settings_schema = {
        "region": Key(str, "eu", choices=("eu", "us")),
        "spool": Key(str, ".brief/acme"),
        "batch": Key(int, 10, bounds=(1, 100)),
    }
    secrets = (TOKEN_ENV,)

    def __init__(self, setup):
        self.region = setup.table["region"]
        self.batch = setup.table["batch"]
        self.spool = setup.root / setup.table["spool"]
        self.token = setup.secret(TOKEN_ENV)
        self.seen_secrets = sorted(setup.secrets)  # names only: a secret is never written
        self.sender = setup.from_address

    def open(self) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)

    def push(self, messages):
        with Path(self.spool, "sent.jsonl").open("a", encoding="utf-8") as out:
            for m in messages:
                line = {
                    "key": m.key,
                    "to": m.to_address,
                    "region": self.region,
                    "batch": self.batch,
                    "sender": self.sender,
                    "token_ok": self.token == "acme-t0ken",
                    "secrets": self.seen_secrets,
                }
                out.write(json.dumps(line) + "\n")
        return [Result.sent(m.key, f"acme-{m.key}") for m in messages]

    def close(self) -> None:
        pass


class AcmeVerifier:
    """``/webhooks/acme``: a shared secret in a header, then ``{"id", "bounced"}``."""

    settings_schema = {"header": Key(str, "x-acme-secret")}
    secrets = (HOOK_ENV,)

    def verify(self, call, table, secrets):
        expected = secrets.get(HOOK_ENV)
        given = call.headers.get(table["header"], "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unverified("wrong or missing Acme secret")
        try:
            data = json.loads(call.body)
        except ValueError:
            raise BadPayload("not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("bounced"), str):
            raise BadPayload("not an Acme event")
        return [Event("acme", str(data.get("id", "")), "hard_bounce", data["bounced"])]
