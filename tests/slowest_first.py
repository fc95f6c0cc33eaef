"""Order the tests so that six xdist workers finish together: the long ones spread out and first.

`make test` runs `-n 6 --dist worksteal`. Worksteal gives each worker an equal-sized contiguous slice
of the collection, runs each slice in order, and lets a worker that runs dry take half of the longest
remaining queue from its end. In collection order, one slice held several of the 30-70 s tests and
finished a minute after the rest. This plugin deals the tests into one slice per worker,
longest-processing-time first (each to the slice with the least work so far, with room), puts each
slice's longest tests first, and concatenates the slices, so worksteal's slices are these. What is
left to steal at the end is the short tests.

A module under tests/unit/ stays together in one slice: several build a costly module-scoped fixture
(the face model, the face corpus's embeddings) or a cache on first use, once per worker that runs any
of their tests.

The durations are measured, not guessed: `make durations` runs the suite with
`--record-durations tests/durations.json`, which sums each test's setup, call and teardown as the
controller receives them. A test not measured yet counts as a typical one. (The slowest-first plugins
on PyPI read pytest's cache of the last run, which a fresh clone, and so CI, does not have, and sort
globally, which worksteal would hand to one worker.)
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest

DURATIONS_FILE = Path(__file__).with_name("durations.json")
GROUPED_PREFIX = "tests/unit/"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-durations",
        metavar="PATH",
        default=None,
        help="write every test's seconds (setup + call + teardown) to PATH as JSON, for tests/slowest_first.py",
    )


def load_durations(path: Path = DURATIONS_FILE) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    return {str(nodeid): float(seconds) for nodeid, seconds in data.items()}


def unit_of(nodeid: str) -> str:
    """What is kept together on one worker: a unit-test module, or one test."""
    path = nodeid.split("::", 1)[0]
    return path if path.startswith(GROUPED_PREFIX) else nodeid


def slice_sizes(total: int, workers: int) -> list[int]:
    """How many tests worksteal gives each worker at the start (xdist's WorkStealingScheduling)."""
    sizes = []
    for index in range(workers):
        sizes.append((total - sum(sizes)) // (workers - index))
    return sizes


def balanced_order(nodeids: Sequence[str], durations: dict[str, float], workers: int) -> list[str]:
    """``nodeids`` as ``workers`` consecutive slices of worksteal's sizes, balanced by duration.

    Deterministic (ties keep collection order): every worker computes the same order, which xdist
    checks before it runs anything."""
    if workers <= 1 or not nodeids:
        return list(nodeids)
    typical = statistics.median(durations.values()) if durations else 0.0
    units: dict[str, list[str]] = {}
    for nodeid in nodeids:
        units.setdefault(unit_of(nodeid), []).append(nodeid)
    seconds = {unit: sum(durations.get(n, typical) for n in members) for unit, members in units.items()}
    room = slice_sizes(len(nodeids), workers)
    work = [0.0] * workers
    slices: list[list[tuple[float, list[str]]]] = [[] for _ in range(workers)]
    for unit in sorted(units, key=lambda unit: -seconds[unit]):
        members = units[unit]
        while members:  # a unit larger than any slice's room is split (none is, today)
            target = min((i for i in range(workers) if room[i] > 0), key=lambda i: (work[i], i))
            part, members = members[: room[target]], members[room[target] :]
            part_seconds = seconds[unit] * len(part) / len(units[unit])
            slices[target].append((part_seconds, part))
            room[target] -= len(part)
            work[target] += part_seconds
    ordered: list[str] = []
    for entries in slices:
        for _, part in sorted(entries, key=lambda entry: -entry[0]):
            ordered.extend(part)
    return ordered


def _workers(config: pytest.Config) -> int:
    workerinput = getattr(config, "workerinput", None)
    return int(workerinput["workercount"]) if workerinput else 1


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    by_id = {item.nodeid: item for item in items}
    items[:] = [by_id[nodeid] for nodeid in balanced_order(list(by_id), load_durations(), _workers(config))]


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--record-durations")
    # Under xdist the controller receives every worker's reports; the workers record nothing.
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(DurationRecorder(Path(path)), "duration-recorder")


class DurationRecorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self) -> None:
        longest_first = sorted(self.seconds.items(), key=lambda entry: -entry[1])
        self.path.write_text(json.dumps({nodeid: round(s, 2) for nodeid, s in longest_first}, indent=0) + "\n")
