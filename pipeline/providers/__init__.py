"""Find mail providers through the ``brief.providers`` entry-point group.

The built-ins register there exactly as a third party's package would, so
``load_provider`` knows no provider by name. Each provider declares its settings
table and its secrets (``pipeline.plugins``); it is built from those alone.
"""

from __future__ import annotations

from pipeline.config import Settings, read_table
from pipeline.plugins import PROVIDERS, schema_of, secrets_for
from pipeline.providers.base import Provider, ProviderFactory, ProviderSetup


def available() -> dict[str, str]:
    """Installed providers: name -> ``module:attribute``."""
    return PROVIDERS.available()


def load_provider(settings: Settings, name: str | None = None) -> Provider:
    """Build the named provider (the configured one by default) from its own table."""
    factory = provider_factory(settings, name)
    return factory(provider_setup(settings, name, factory))


def provider_factory(settings: Settings, name: str | None = None) -> ProviderFactory:
    """The registered factory of the named provider (the configured one by default).

    ``brief check`` calls this so an unknown or broken provider name is a settings
    error up front, not a failure at the slot; it builds nothing (no secrets needed).
    """
    return PROVIDERS.load(name or settings.provider.name, "provider.name")


def provider_setup(
    settings: Settings, name: str | None = None, factory: ProviderFactory | None = None
) -> ProviderSetup:
    """What the named provider is built from: its table (checked when the settings were
    read; its defaults when brief.toml has none), its declared secrets, and the sender."""
    name = name or settings.provider.name
    factory = factory or provider_factory(settings, name)
    table = settings.provider.tables.get(name)
    if table is None:
        table = read_table(f"provider.{name}", schema_of(factory), {})
    return ProviderSetup(
        name=name,
        table=table,
        root=settings.root,
        from_address=settings.newsletter.from_address,
        secrets=secrets_for(factory, settings.env),
    )
