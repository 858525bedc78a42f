"""The layout draws the flow: imports run one way, down the flow, never back up it.

Each top-level part of ``pipeline`` may import only the parts listed for it here
(the ground floor, ``config``, ``errors``, ``mail``, ``plugins`` and ``private``, from
anywhere).
A new import that reaches back up the line (the store importing the sender, the
renderer importing the CLI) fails this test instead of tangling the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
GROUND = {"config", "errors", "mail", "plugins", "private", "__init__"}

# part -> the parts (besides the ground floor) it may import, in the order of the flow.
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "errors": set(),
    "mail": set(),
    "plugins": set(),
    "private": set(),
    "content": set(),
    "store": set(),
    "providers": set(),
    "render": {"content"},
    "send": {"content", "render", "store", "providers"},
    "webhooks": {"store", "providers"},
    "report": {"store"},
    "bounces": {"store", "webhooks"},
    # render: a finished send rebuilds the static archive ([site] rebuild_after_send).
    "daemon": {"content", "render", "send", "store", "bounces"},
    "web": {"content", "render", "send", "store", "webhooks", "report"},
    "demo": {"content", "render", "send", "store", "providers"},
    "doctor": {"content", "render", "send", "store", "providers"},
    "cli": {
        "content",
        "render",
        "send",
        "store",
        "providers",
        "webhooks",
        "bounces",
        "daemon",
        "web",
        "demo",
        "doctor",
        "report",
    },
    "__main__": {"cli"},
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_between_parts() -> dict[str, set[tuple[str, str]]]:
    """part -> {(imported part, importing file)} for every import of another part."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        rel = path.relative_to(PACKAGE.parent)
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{rel}:{node.lineno}: relative import; write it absolute")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
                if node.module == "pipeline":
                    targets = [f"pipeline.{a.name}" for a in node.names]
                else:
                    targets = [node.module or ""]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("pipeline")]
            else:
                continue
            for target in targets:
                here, there = _part(module), _part(target)
                if there == "__version__":
                    there = "__init__"
                if here != there:
                    found.setdefault(here, set()).add((there, f"{rel}:{node.lineno}"))
    return found


def test_every_part_of_the_package_has_a_place_in_the_flow():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    parts = {p for p in parts if not p.startswith((".", "_")) or p == "__main__"}
    assert parts - {"__pycache__"} <= set(ALLOWED), "a new part: give it a place in ALLOWED"


def test_imports_run_down_the_flow_never_back_up():
    wrong = [
        f"{where}: {here} imports {there}"
        for here, targets in imports_between_parts().items()
        for there, where in sorted(targets)
        if there not in GROUND and there not in ALLOWED[here]
    ]
    assert wrong == []
