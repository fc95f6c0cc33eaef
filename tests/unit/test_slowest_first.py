"""The order `make test` runs tests in: worksteal's slices, balanced by measured duration."""

from __future__ import annotations

import random
from pathlib import Path

from tests.slowest_first import DURATIONS_FILE, balanced_order, load_durations, slice_sizes, unit_of


def _slices(order: list[str], workers: int) -> list[list[str]]:
    slices, start = [], 0
    for size in slice_sizes(len(order), workers):
        slices.append(order[start : start + size])
        start += size
    return slices


def test_slices_have_worksteal_sizes_and_even_work_with_the_longest_first() -> None:
    rng = random.Random(7)
    nodeids = [f"tests/integration/test_x.py::test_{i}" for i in range(300)]
    durations = {nodeid: rng.choice([0.05, 0.2, 1.0, 5.0, 40.0]) for nodeid in nodeids}
    order = balanced_order(nodeids, durations, 6)
    assert sorted(order) == sorted(nodeids)
    slices = _slices(order, 6)
    assert [len(s) for s in slices] == [50] * 6
    work = [sum(durations[n] for n in s) for s in slices]
    assert max(work) - min(work) <= 40.0  # no slice more than one long test ahead
    for s in slices:
        assert [durations[n] for n in s] == sorted((durations[n] for n in s), reverse=True)


def test_a_unit_test_module_stays_in_one_slice_and_in_one_piece() -> None:
    nodeids = [f"tests/unit/test_faces.py::test_{i}" for i in range(5)]
    nodeids += [f"tests/integration/test_y.py::test_{i}" for i in range(25)]
    durations = dict.fromkeys(nodeids, 1.0)
    order = balanced_order(nodeids, durations, 3)
    faces = [order.index(n) for n in nodeids[:5]]
    assert faces == list(range(faces[0], faces[0] + 5))
    assert unit_of(nodeids[0]) == "tests/unit/test_faces.py" and unit_of(nodeids[5]) == nodeids[5]


def test_the_order_is_deterministic_and_one_worker_keeps_collection_order() -> None:
    nodeids = [f"tests/integration/test_z.py::test_{i}" for i in range(40)]
    assert balanced_order(nodeids, {}, 6) == balanced_order(nodeids, {}, 6)
    assert balanced_order(nodeids, {nodeids[-1]: 9.0}, 1) == nodeids
    assert slice_sizes(1687, 6) == [281, 281, 281, 281, 281, 282]


def test_the_recorded_durations_name_tests_that_exist(tmp_path: Path) -> None:
    durations = load_durations(DURATIONS_FILE)
    assert len(durations) > 1000 and all(seconds >= 0 for seconds in durations.values())
    files = {nodeid.split("::")[0] for nodeid in durations}
    missing = sorted(name for name in files if not (DURATIONS_FILE.parent.parent / name).exists())
    assert not missing, f"tests/durations.json names files that are gone (run `make durations`): {missing}"
    assert load_durations(tmp_path / "absent.json") == {}
