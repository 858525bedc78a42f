"""One Jinja2 environment over the newsletter's ``templates/`` folder.

Shared by the email and the web pages: StrictUndefined (a missing value is an
error, never an empty string in a subscriber's inbox) and autoescaping for
HTML-like templates (``*.html``, ``*.mjml``, ``*.xml``, also with ``.j2``).
Template failures become a ``RenderError`` naming the template file and line.
"""

from __future__ import annotations

import traceback
from datetime import date
from pathlib import Path

import jinja2
from markupsafe import Markup

from pipeline.config import Settings
from pipeline.errors import RenderError
from pipeline.render import markdown

_ESCAPED = (".html", ".htm", ".mjml", ".xml", ".svg")


def _autoescape(name: str | None) -> bool:
    if name is None:
        return False
    for suffix in (".j2", ".jinja", ".jinja2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.endswith(_ESCAPED)


def long_date(day: date) -> str:
    """A date as readers write it, ``2 December 2026``: the one format of every date in the
    mail and on the site (templates use the ``long_date`` filter, never strftime)."""
    return f"{day.day} {day:%B %Y}"


def environment(settings: Settings) -> jinja2.Environment:
    """Jinja2 over ``settings.root/templates`` with Brief's filters and globals."""
    folder = templates_dir(settings)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.filters["markdown"] = lambda text, styles=None: Markup(markdown.to_html(text, styles))
    env.filters["markdown_inline"] = lambda text: Markup(markdown.to_inline_html(text))
    env.filters["link_label"] = markdown.link_label
    env.filters["text"] = markdown.to_text
    env.filters["wrap"] = markdown.wrap
    env.filters["heading"] = markdown.heading
    env.filters["long_date"] = long_date
    env.globals["footnotes"] = markdown.Footnotes
    env.globals["newsletter"] = settings.newsletter
    # What is measured, for the subscribe form's fine print.
    env.globals["tracking"] = settings.tracking
    return env


def templates_dir(settings: Settings) -> Path:
    """Where the newsletter's templates live."""
    return settings.root / "templates"


def render_template(env: jinja2.Environment, name: str, /, **values) -> str:
    """Render one template; any template failure is a RenderError naming file and line."""
    try:
        return env.get_template(name).render(**values)
    except jinja2.TemplateNotFound as exc:
        folder = getattr(env.loader, "searchpath", ["templates"])[0]
        missing = exc.name or name
        hint = "" if missing == name else f" (included from {name})"
        raise RenderError(f"template {missing} not found in {folder}{hint}") from None
    except jinja2.TemplateSyntaxError as exc:
        where = _shown(exc.filename or exc.name or name, env)
        raise RenderError(f"{where}:{exc.lineno}: template syntax error: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        where, line = _location(exc, env, name)
        raise RenderError(f"{where}:{line}: undefined template variable: {exc.message}") from None
    except jinja2.TemplateError as exc:
        where, line = _location(exc, env, name)
        raise RenderError(f"{where}:{line}: template error: {exc}") from None


def _shown(filename: str, env: jinja2.Environment) -> str:
    """A template file as the operator knows it: relative to the newsletter root."""
    folders = getattr(env.loader, "searchpath", [])
    path = Path(filename)
    for folder in folders:
        root = Path(folder)
        try:
            return str(path.resolve().relative_to(root.resolve().parent))
        except ValueError:
            continue
    return filename


def _location(exc: BaseException, env: jinja2.Environment, name: str) -> tuple[str, int]:
    """The innermost template frame of a runtime template error (Jinja rewrites
    tracebacks so template frames carry the template's file name and line)."""
    folders = [str(Path(f).resolve()) for f in getattr(env.loader, "searchpath", [])]
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if any(str(Path(frame.filename).resolve()).startswith(f) for f in folders):
            return _shown(frame.filename, env), frame.lineno or 0
    return f"templates/{name}", 0
