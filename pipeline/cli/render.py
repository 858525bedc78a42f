"""``brief render`` and ``brief preview``: thin shells over render, lint and the preview app."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli.main import Env
from pipeline.errors import NotFound
from pipeline.private import private_dirs
from pipeline.send.proof import write_rendered
from pipeline.web.preview import create_app


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} B"


@click.command()
@click.argument("issue_ref", metavar="[ISSUE]", required=False)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the files (default: .brief/render).",
)
@click.pass_obj
def render(env: Env, issue_ref: str | None, out_dir: Path | None) -> None:
    """Render ISSUE (a number or a path; default: the next unsent) to NNN.html/.txt/.eml.

    The files carry a sample reader's links, as a subscriber would get them.
    Lint errors stop the render; warnings are printed.
    """
    settings = env.settings
    library = env.library()
    issue = library.issue(issue_ref) if issue_ref else next_issue(library)
    out = out_dir or settings.state_dir / "render"
    if out_dir is None:
        private_dirs(settings.state_dir)  # the first to make .brief/ makes it private
    for path in write_rendered(
        issue, library, settings, out, warn=lambda w: click.echo(w, err=True)
    ):
        click.echo(f"{path}  {_size(path.stat().st_size)}")
    click.echo(f"open {out / f'{issue.label}.html'} in a browser, or run: brief preview")


def next_issue(library):
    """The next unsent issue (the lowest-numbered one not sent)."""
    issue = library.next_unsent()
    if issue is None:
        raise NotFound("no unsent issue: run `brief assemble` to write the next one")
    return issue


@click.command()
@click.argument("issue_ref", metavar="[ISSUE]", required=False)
@click.option(
    "--port",
    default=8025,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind (loopback unless you say otherwise).",
)
@click.option("--no-open", is_flag=True, help="Do not open a browser.")
@click.pass_obj
def preview(env: Env, issue_ref: str | None, port: int, host: str, no_open: bool) -> None:
    """Serve a live preview of the issues; pages reload when content or templates change."""
    import threading
    import webbrowser

    import uvicorn

    settings = env.settings
    path = "/"
    if issue_ref:
        path = f"/issues/{env.library().issue(issue_ref).label}/"
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}{path}"
    click.echo(f"preview: {url}  (Ctrl-C to stop)")
    if not no_open:
        threading.Timer(0.8, webbrowser.open, args=(url,)).start()
    uvicorn.run(
        create_app(settings), host=host, port=port, log_level="warning", timeout_graceful_shutdown=2
    )
