"""Reports of the load runs: a table on stdout, JSON, and a PNG (latency distributions, throughput over time).

Targets come from the product brief; every figure that has one is shown next to it with the margin, so a
miss says by how much.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

# (label, how to read the figure from a run, target text, check → (met, margin text))
Check = Callable[[Any], tuple[bool, str]]


def _at_most(limit: float, unit: str = " s") -> Check:
    def check(value: Any) -> tuple[bool, str]:
        if value is None:
            return False, "no data"
        if value <= limit:
            return True, f"met ({limit - value:.3g}{unit} to spare)"
        return False, f"missed by {value - limit:.3g}{unit} ({value / limit:.1f}x)"

    return check


def _at_least(limit: float) -> Check:
    def check(value: Any) -> tuple[bool, str]:
        if value is None:
            return False, "no data (never saturated)"
        if value >= limit:
            return True, "met"
        return False, f"missed by {100 * (limit - value):.1f} points"

    return check


def _zero(value: Any) -> tuple[bool, str]:
    return (value == 0, "met" if value == 0 else f"missed: {value}")


TARGETS: dict[str, tuple[str, Check]] = {
    # Streaming delivery: a lone portrait may wait the album window (3 s by default) for company.
    "added_latency_p95": ("≤ album window + 1 s = 4 s (callbacks)", _at_most(4.0)),
    "first_portrait_p95": ("≤ 1 s (callbacks)", _at_most(1.0)),
    "payment_to_first_create_p95": ("≤ 1 s", _at_most(1.0)),
    "kie_budget_used": ("≥ 95 %", _at_least(0.95)),
    "kie_429": ("0", _zero),
}


def _p(run: dict[str, Any], key: str, part: str) -> Any:
    return (run.get(key) or {}).get(part)


def rows(run: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, verdict) for one run."""
    callbacks = run.get("mode") == "callbacks"
    out: list[tuple[str, str, str, str]] = []

    def add(label: str, value: Any, target_key: str | None = None, shown: str | None = None) -> None:
        target, verdict = "", ""
        if target_key is not None and (target_key not in ("added_latency_p95", "first_portrait_p95") or callbacks):
            target, check = TARGETS[target_key]
            verdict = check(value)[1]
        out.append((label, shown if shown is not None else _fmt(value), target, verdict))

    lat = run.get("added_latency_s") or {}
    add(
        "added latency provider success → chat p50/p95/max",
        lat.get("p95"),
        "added_latency_p95",
        f"{_fmt(lat.get('p50'))} / {_fmt(lat.get('p95'))} / {_fmt(lat.get('max'))} s (n={lat.get('n')})",
    )
    first = run.get("added_latency_first_portrait_s") or {}
    add(
        "  first portrait of each pack p50/p95",
        first.get("p95"),
        "first_portrait_p95",
        f"{_fmt(first.get('p50'))} / {_fmt(first.get('p95'))} s (n={first.get('n')})",
    )
    wait, work = run.get("added_album_wait_s") or {}, run.get("added_app_work_s") or {}
    add(
        "  of which: album wait / app's own work p50/p95",
        None,
        None,
        f"{_fmt(wait.get('p50'))} / {_fmt(wait.get('p95'))} s; {_fmt(work.get('p50'))} / {_fmt(work.get('p95'))} s",
    )
    real = run.get("added_latency_real_time_equivalent_s") or {}
    add(
        "  real-time equivalent (wait / F + work) p50/p95",
        real.get("p95"),
        "added_latency_p95",
        f"{_fmt(real.get('p50'))} / {_fmt(real.get('p95'))} s",
    )
    stored = run.get("provider_success_to_stored_s") or {}
    add("provider success → stored p50/p95", None, None, f"{_fmt(stored.get('p50'))} / {_fmt(stored.get('p95'))} s")
    pay = run.get("payment_to_first_create_s") or {}
    add(
        "payment confirmed → first createTask p50/p95",
        pay.get("p95"),
        "payment_to_first_create_p95",
        f"{_fmt(pay.get('p50'))} / {_fmt(pay.get('p95'))} s (n={pay.get('n')})",
    )
    used = run.get("kie_budget_used")
    add(
        "Kie create budget used (saturated windows)",
        used,
        "kie_budget_used",
        "n/a"
        if used is None
        else f"{100 * used:.1f} % of {run.get('kie_limit')} over {run.get('kie_saturated_windows')}"
        f" windows (ceiling {run.get('kie_budget_ceiling')} from the limiter's safety margin); "
        f"max {run.get('kie_max_creates_in_window')} in any window",
    )
    add("Kie 429s received", run.get("kie_429"), "kie_429")
    add(
        "Kie recordInfo calls (per photo) / 429s",
        None,
        None,
        f"{run.get('kie_status_calls')} ({run.get('kie_status_calls_per_photo')}) / {run.get('kie_status_429')}",
    )
    add("Replicate creates / 429s", None, None, f"{run.get('replicate_creates')} / {run.get('replicate_429')}")
    sends = run.get("telegram_sends_per_pack") or {}
    add("Telegram sends per pack", None, None, ", ".join(f"{k} {v}" for k, v in sends.items() if v))
    add(
        "Telegram 429s provoked (fake flood control) / seen by app",
        None,
        None,
        f"{run.get('telegram_429_provoked')} / {run.get('telegram_429_seen_by_app')}",
    )
    add("CPU seconds per pack", run.get("cpu_seconds_per_pack"))
    add(
        "CPU use: app / runner with fakes (cores)",
        None,
        None,
        f"{_fmt(run.get('cpu_utilisation'))} / {_fmt(run.get('runner_cpu_utilisation'))}",
    )
    add("peak RSS", None, None, f"{_fmt(run.get('peak_rss_mib'))} MiB")
    add("DB statements per photo", run.get("db_statements_per_photo"))
    add(
        "packs finished / photos delivered / credited back",
        None,
        None,
        f"{run.get('packs_finished')}/{run.get('packs')} / {run.get('photos_delivered')} / "
        f"{run.get('photos_credited_back')}",
    )
    add("wall time", None, None, f"{run.get('wall_seconds')} s")
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def knee(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest capacity step that still finished every pack with the app's own share of the added
    latency (after an album's last portrait is ready) at p95 ≤ 1 s and within 2× the smallest step's."""
    steps = sorted((run for run in runs if run.get("kind") == "capacity"), key=lambda run: run["users"])
    baseline = _p(steps[0], "added_app_work_s", "p95") if steps else None
    carried = None
    for run in steps:
        work = _p(run, "added_app_work_s", "p95")
        limit = max(1.0, 2 * baseline) if baseline is not None else 1.0
        if run.get("finished_in_time") and work is not None and work <= min(1.0, limit):
            carried = run["users"]
    return {
        "criterion": "all packs finished, app's own work p95 <= 1 s and <= 2x the smallest step",
        "steps": [
            {
                "packs": run["users"],
                "added_p95_s": _p(run, "added_latency_s", "p95"),
                "app_work_p95_s": _p(run, "added_app_work_s", "p95"),
                "real_time_equivalent_p95_s": _p(run, "added_latency_real_time_equivalent_s", "p95"),
                "pay_to_create_p95_s": _p(run, "payment_to_first_create_s", "p95"),
                "kie_budget_used": run.get("kie_budget_used"),
                "kie_429": run.get("kie_429"),
                "cpu_utilisation": run.get("cpu_utilisation"),
                "runner_cpu_utilisation": run.get("runner_cpu_utilisation"),
                "peak_rss_mib": run.get("peak_rss_mib"),
                "finished": run.get("finished_in_time"),
                "wall_seconds": run.get("wall_seconds"),
            }
            for run in steps
        ],
        "largest_step_within_target": carried,
    }


def table(runs: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for run in runs:
        title = (
            f"== {run.get('kind')}: {run.get('mode')}, {run.get('users')} users, {run.get('database')}, "
            f"time factor {run.get('time_factor')}"
        )
        lines.append(title)
        width = max(len(row[0]) for row in rows(run))
        for label, value, target, verdict in rows(run):
            suffix = f"   target {target}: {verdict}" if target else ""
            lines.append(f"  {label:<{width}}  {value}{suffix}")
        if run.get("user_errors"):
            lines.append(f"  user errors: {run.get('users_failed')}: {run.get('user_errors')}")
        if run.get("note"):
            lines.append(f"  note: {run['note']}")
    capacity = knee(runs)
    if capacity["steps"]:
        lines.append("== capacity (23-photo packs, callbacks)")
        for step in capacity["steps"]:
            lines.append(
                f"  {step['packs']:>5} packs: added p95 {_fmt(step['added_p95_s'])} s (app's own work "
                f"{_fmt(step['app_work_p95_s'])} s, real-time equiv. {_fmt(step['real_time_equivalent_p95_s'])} s), "
                f"pay→create p95 {_fmt(step['pay_to_create_p95_s'])} s, budget {_fmt(step['kie_budget_used'])}, "
                f"429s {step['kie_429']}, CPU app/runner {_fmt(step['cpu_utilisation'])}/"
                f"{_fmt(step['runner_cpu_utilisation'])}, RSS {_fmt(step['peak_rss_mib'])} MiB, "
                f"finished {step['finished']}, {step['wall_seconds']} s"
            )
        lines.append(f"  largest step carried ({capacity['criterion']}): {capacity['largest_step_within_target']}")
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency_axis, throughput_axis) = plt.subplots(1, 2, figsize=(13, 5))
    for run in runs:
        label = f"{run.get('kind')} {run.get('mode')} n={run.get('users')}"
        values = (run.get("series") or {}).get("added_latency_s") or []
        if values:
            fractions = [(index + 1) / len(values) for index in range(len(values))]
            latency_axis.plot(values, fractions, label=label)
        delivered = (run.get("series") or {}).get("delivered_at_s") or []
        if delivered:
            width = max(1.0, delivered[-1] / 100)  # about 100 bins per run, so long runs stay readable
            bins = int(delivered[-1] / width) + 1
            counts = [0] * bins
            for moment in delivered:
                counts[min(bins - 1, max(0, int(moment / width)))] += 1
            throughput_axis.plot([i * width for i in range(bins)], [c / width for c in counts], label=label)
    latency_axis.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    latency_axis.set(
        xscale="log", xlabel="added latency, provider success → chat (s)", ylabel="fraction of photos", title="CDF"
    )
    throughput_axis.set(xlabel="seconds since start", ylabel="photos delivered per second", title="throughput")
    latency_axis.legend(fontsize=7)
    throughput_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_reports(runs: list[dict[str, Any]], out: Path, *, command: str) -> None:
    """``out``.json, ``out``.png, and the table on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {"command": command, "runs": runs, "capacity": knee(runs)}
    out.with_suffix(".json").write_text(json.dumps(document, indent=1, default=str))
    plot(runs, out.with_suffix(".png"))
    print(table(runs))
    print(f"\nreports: {out.with_suffix('.json')} and {out.with_suffix('.png')}")
