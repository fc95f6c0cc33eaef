"""Handlers only translate between the chat and the services (issue #17, "thin handlers"): every
function registered on a router is at most 30 lines, nothing under bot/handlers/ commits, and nothing
there imports ``storage`` but ``storage.models`` (for annotations such as ``User``).

Every router of the tree the application runs (``build_root_router``) is checked, and the source
rules hold for every module under bot/handlers/, so a new router or module is covered without a list.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiogram import Router

from bot.handlers import build_root_router

ROOT = Path(__file__).resolve().parents[3]
HANDLERS = ROOT / "bot" / "handlers"
MAX_HANDLER_LINES = 30
ROUTERS: dict[str, Router] = {router.name: router for router in build_root_router().sub_routers}


def _routers(router: Router) -> Iterator[Router]:
    yield router
    for child in router.sub_routers:
        yield from _routers(child)


def _handlers(router: Router) -> Iterator[Callable[..., object]]:
    for one in _routers(router):
        for observer in one.observers.values():
            for handler in observer.handlers:
                yield handler.callback


def test_the_tree_has_every_area() -> None:
    assert {"admin", "common", "payment", "results", "intake", "fallback"} <= set(ROUTERS)


def _lines(function: Callable[..., object]) -> int:
    """From the first decorator (or the def) to the last line."""
    lines, _start = inspect.getsourcelines(function)
    return len(lines)


@pytest.mark.parametrize("name", sorted(ROUTERS))
def test_every_registered_handler_is_at_most_30_lines(name: str) -> None:
    handlers = set(_handlers(ROUTERS[name]))
    assert handlers, f"the {name} router registers no handlers"
    too_long = {f"{h.__module__}.{h.__qualname__}": _lines(h) for h in handlers if _lines(h) > MAX_HANDLER_LINES}
    assert not too_long, too_long


@pytest.mark.parametrize("path", sorted(HANDLERS.rglob("*.py")), ids=lambda path: str(path.relative_to(ROOT)))
def test_handler_modules_neither_commit_nor_import_storage(path: Path) -> None:
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "commit":
            problems.append(f"line {node.lineno}: .commit")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "storage" or (node.module.startswith("storage.") and node.module != "storage.models"):
                problems.append(f"line {node.lineno}: from {node.module} import …")
        elif isinstance(node, ast.Import):
            problems += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name == "storage" or alias.name.startswith("storage.")
            ]
    assert not problems, problems
