"""Plug-ins found through entry points: mail providers and webhook verifiers.

A plug-in is whatever an entry point names (a class, usually). Two class attributes
tell Brief how to build it, so the built-ins and a third party's package are read
the same way:

- ``settings_schema``: its settings table (``[provider.<name>]`` or
  ``[webhooks.<name>]``) as ``{key: Key(...)}``, the one place its defaults live;
- ``secrets``: the environment variables it reads; it is handed those and no others.

Nothing here is loaded at import time: the entry points are read when asked.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from types import MappingProxyType
from typing import Any

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class Key:
    """One key of a plug-in's settings table: its type, its default, and its limits.

    ``bounds`` is an inclusive (low, high) for a number; ``choices`` the strings allowed;
    ``url`` asks for an absolute http(s) URL when not empty; ``check(key, value)`` may
    refuse anything else with a ConfigError naming ``key``, or return a cleaned value.
    """

    types: type | tuple[type, ...]
    default: Any
    bounds: tuple[float, float] | None = None
    choices: tuple[str, ...] = ()
    url: bool = False
    check: Callable[[str, Any], Any] | None = None


TableSchema = Mapping[str, Key]


@dataclass(frozen=True)
class Registry:
    """One entry-point group, e.g. ``brief.providers``; ``section`` is its brief.toml table."""

    group: str
    section: str  # "provider" or "webhooks"
    what: str  # "provider" or "webhook verifier", for messages

    def _entry_points(self) -> Mapping[str, EntryPoint]:
        return _scan(self.group, tuple(sys.path))

    def available(self) -> dict[str, str]:
        """Installed plug-ins: name -> ``module:attribute``."""
        return {name: ep.value for name, ep in sorted(self._entry_points().items())}

    def load(self, name: str, key: str) -> Any:
        """What the entry point ``name`` names; a ConfigError naming ``key`` when no such
        plug-in is installed or it cannot be imported."""
        eps = self._entry_points()
        if name not in eps:
            known = ", ".join(sorted(eps)) or "none installed"
            raise ConfigError(f"{key}: unknown {self.what} {name!r} (installed: {known})")
        try:
            return eps[name].load()
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"{key}: {self.what} {name!r} is registered as {eps[name].value} "
                f"but cannot be loaded: {exc}"
            ) from None


@functools.lru_cache(maxsize=16)
def _scan(group: str, path: tuple[str, ...]) -> Mapping[str, EntryPoint]:
    """The entry points of ``group`` found on ``path``.

    Reading them means reading the metadata of every installed distribution (20-40 ms
    in a full environment), and settings are read often (each command, each test), so
    the answer is kept per search path: the same path finds the same packages, and a
    changed ``sys.path`` is a new scan. A package installed into a folder while a
    process runs is seen by the next process, as with imports. (A cache of a lookup,
    not state: nothing is ever written to it but the scan's answer.)
    """
    return MappingProxyType({ep.name: ep for ep in entry_points(group=group)})


def schema_of(plugin: Any) -> TableSchema:
    """A plug-in's settings table schema (none declared: a table with no keys)."""
    schema = getattr(plugin, "settings_schema", None)
    return schema if isinstance(schema, Mapping) else {}


def secrets_for(plugin: Any, env: Mapping[str, str]) -> Mapping[str, str]:
    """The environment variables a plug-in declared in ``secrets``, those that are set."""
    names = getattr(plugin, "secrets", ())
    return {name: env[name] for name in names if name in env}


PROVIDERS = Registry("brief.providers", "provider", "provider")
WEBHOOKS = Registry("brief.webhooks", "webhooks", "webhook verifier")
