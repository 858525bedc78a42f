"""Find mail providers through the ``brief.providers`` entry-point group.

The built-ins register there exactly as a third party's package would, so
``load_provider`` knows no provider by name.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from pipeline.config import Settings
from pipeline.errors import ConfigError
from pipeline.providers.base import Provider

GROUP = "brief.providers"


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> dict[str, str]:
    """Installed providers: name -> ``module:attribute``."""
    return {name: ep.value for name, ep in sorted(_entry_points().items())}


def load_provider(settings: Settings, name: str | None = None) -> Provider:
    """Build the named provider (the configured one by default) from settings."""
    return provider_factory(settings, name)(settings)


def provider_factory(settings: Settings, name: str | None = None) -> Callable[[Settings], Provider]:
    """The registered factory of the named provider (the configured one by default).

    ``brief check`` calls this so an unknown or broken provider name is a settings
    error up front, not a failure at the slot; it builds nothing (no secrets needed).
    """
    name = name or settings.provider.name
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise ConfigError(f"provider.name: unknown provider {name!r} (installed: {known})")
    try:
        return eps[name].load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"provider.name: provider {name!r} is registered as {eps[name].value} "
            f"but cannot be loaded: {exc}"
        ) from None
