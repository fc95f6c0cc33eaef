"""Rules of the code base that no linter checks for us."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


IGNORE = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?(?P<rest>.*)$")


def test_every_type_ignore_in_production_code_says_why_on_its_line() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}:{number}"
        for package in ("bot", "scheduler", "storage", "providers", "studio")
        for path in sorted((ROOT / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if (found := IGNORE.search(line)) and not found.group("rest").strip().lstrip("#").strip()
    ]
    assert unexplained == []
