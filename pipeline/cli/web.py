"""`brief serve` and `brief site build`: thin shells over the web app and the site."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.render.site import archive, build_site
from pipeline.web.public import create_app
from pipeline.web.security import h11_protocol, origin_of


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="TCP port."
)
@click.pass_obj
def serve(env, host: str, port: int) -> None:
    """Serve the public pages: subscribe, confirm, unsubscribe, preferences, webhooks, archive."""
    import uvicorn

    settings = env.settings
    env.library()  # refuse to start on broken content, with the path:line problems
    app = create_app(settings, engine=env.engine())
    click.echo(
        f"serving {settings.newsletter.name} on http://{host}:{port}/ "
        f"(links point at {settings.newsletter.base_url})",
        err=True,
    )
    # access_log off: request lines carry tokens in their paths, and tokens are never logged.
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        # The app applies web.trusted_proxies itself; uvicorn's own guess stays off.
        proxy_headers=False,
        server_header=False,
        http=h11_protocol([origin_of(settings.newsletter.base_url)]),
    )


@click.group()
def site() -> None:
    """The static web archive."""


@site.command("build")
@click.option(
    "--out",
    "out",
    default=None,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write [default: [site] out, else site/ next to brief.toml].",
)
@click.pass_obj
def build(env, out: Path | None) -> None:
    """Write the archive, glossary, museum and Atom feed as static files."""
    settings = env.settings
    library = env.library()
    target = out.resolve() if out is not None else settings.site.target(settings.root)
    from pipeline.errors import StoreError
    from pipeline.send.edits import edits_after_sending

    try:
        edits = edits_after_sending(env.engine(), library, settings)
    except StoreError as exc:  # a static build needs no database; only the marks are lost
        click.echo(f"warning: edits after sending not marked: {exc}", err=True)
        edits = {}
    files = build_site(library, settings, target, edits)
    arc = archive(library)
    click.echo(
        f"wrote {len(files)} files to {target}: {len(arc.issues)} issues, "
        f"{len(arc.glossary)} glossary entries, {len(arc.museum)} museum stories"
    )
