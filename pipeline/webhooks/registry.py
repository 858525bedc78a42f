"""Webhook verifiers, found by name through the ``brief.webhooks`` entry-point group.

``POST /webhooks/<name>`` asks this registry for the verifier registered as ``name``:
the built-ins register in pyproject.toml exactly as a third party's package would.
An entry point names a class that declares its ``[webhooks.<name>]`` table
(``settings_schema``) and the secrets it reads (``secrets``), and whose instances
``verify`` one call. One instance serves one app, so what it caches (SES's
certificates) lives as long as the app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pipeline.config import Settings, read_table
from pipeline.errors import ConfigError
from pipeline.plugins import WEBHOOKS, TableSchema, schema_of, secrets_for
from pipeline.webhooks.common import Event

log = logging.getLogger("brief.web")


@dataclass(frozen=True)
class WebhookCall:
    """One POST to a webhook: what a verifier checks, and the one service it may use."""

    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    now: datetime
    # Records a one-time token the call carries; False when it was used before (a replay).
    remember: Callable[[str], bool]


class Verifier(Protocol):
    """Checks that a call comes from its provider, then reads the events it reports.

    Raises ``Unverified`` (answered 401, nothing changed) when the call does not prove
    where it comes from, ``BadPayload`` (400) when a verified body is not what the
    provider documents. ``table`` is its ``[webhooks.<name>]`` table, checked against
    ``settings_schema`` with the defaults filled in; ``secrets`` holds the variables
    named in ``secrets`` that are set.
    """

    settings_schema: TableSchema
    secrets: tuple[str, ...]

    def verify(
        self, call: WebhookCall, table: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> list[Event]: ...


@dataclass(frozen=True)
class Bound:
    """A verifier with its own table and secrets, ready for calls."""

    verifier: Verifier
    table: Mapping[str, Any]
    secrets: Mapping[str, str] = field(repr=False)

    def verify(self, call: WebhookCall) -> list[Event]:
        """Verify and read one call (see ``Verifier.verify``)."""
        return self.verifier.verify(call, self.table, self.secrets)


def available() -> dict[str, str]:
    """Installed webhook verifiers: name -> ``module:attribute``."""
    return WEBHOOKS.available()


def bind(settings: Settings, name: str, verifier: Verifier | None = None) -> Bound:
    """The verifier registered as ``name`` (or ``verifier``, already built) with its table
    and secrets; a ConfigError naming ``webhooks.<name>`` when nothing is registered so."""
    key = f"webhooks.{name}"
    if verifier is None:
        factory = WEBHOOKS.load(name, key)
        verifier = factory()
    table = settings.web.webhooks.get(name)
    if table is None:
        table = read_table(key, schema_of(verifier), {})
    return Bound(verifier, table, secrets_for(verifier, settings.env))


@dataclass
class Verifiers:
    """The verifiers of one app, each built on its first call and kept (no globals).

    ``preset`` holds verifiers built by the caller (tests hand SES a loopback trust).
    """

    settings: Settings
    preset: Mapping[str, Verifier] = field(default_factory=dict)
    _bound: dict[str, Bound] = field(default_factory=dict)

    def get(self, name: str) -> Bound | None:
        """The verifier for ``name``; None when no verifier is registered under it."""
        if name not in self._bound:
            try:
                self._bound[name] = bind(self.settings, name, self.preset.get(name))
            except ConfigError as exc:
                if name in available():  # registered but broken: the operator must know
                    log.warning("webhook verifier %s: %s", name, exc)
                return None  # an unknown name is kept nowhere: a caller picks any
        return self._bound[name]
