"""`make mutate`'s summary: killed/total for each mutated module, and every mutant not killed.

Reads the results ``mutmut run`` leaves beside the mutated copies (mutants/<module>.py.meta). A mutant
counts as killed when a test failed (or timed out: the mutation made the code loop); "no tests" and
survivors are the ones to read. Exits non-zero below ``--min`` percent killed overall.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED_CODES = {1, 3, 36, 24, -24, 152, 255}  # mutmut's "killed" and "timeout" exit codes
LABELS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 37: "caught by type check", None: "not checked"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--min", type=float, default=0.0, help="fail below this percent killed")
    args = parser.parse_args()
    metas = sorted(args.mutants.rglob("*.py.meta"))
    if not metas:
        print(f"no mutmut results under {args.mutants}/: run `make mutate`", file=sys.stderr)
        return 2
    killed_all = total_all = 0
    left: list[str] = []
    print(f"{'module':<26} {'killed':>7} {'total':>6} {'score':>7}")
    for meta in metas:
        module = meta.relative_to(args.mutants).as_posix().removesuffix(".meta")
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        killed = sum(code in KILLED_CODES for code in codes.values())
        total = len(codes)
        killed_all += killed
        total_all += total
        print(f"{module:<26} {killed:>7} {total:>6} {100 * killed / max(total, 1):>6.1f}%")
        statuses = Counter(LABELS.get(code, f"exit {code}") for code in codes.values() if code not in KILLED_CODES)
        if statuses:
            print(f"    not killed: {dict(statuses)}")
        left += [f"  {name}: {LABELS.get(code, code)}" for name, code in codes.items() if code not in KILLED_CODES]
    score = 100 * killed_all / max(total_all, 1)
    print(f"{'all':<26} {killed_all:>7} {total_all:>6} {score:>6.1f}%")
    if left:
        print("\nNot killed (`.venv/bin/mutmut show NAME` prints the change; see tests/mutation_survivors.md):")
        print("\n".join(left))
    return 1 if score < args.min else 0


if __name__ == "__main__":
    sys.exit(main())
