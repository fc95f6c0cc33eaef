"""Small, fast versions of `make bench` and `make chaos`: the real application as a subprocess against the
fakes, a handful of users, and the same checks the full runs end with. Timings are reported, never asserted.
The app processes are forked from the tests' pre-imported zygote (the full runs start fresh interpreters)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.chaos import MONEY_KINDS, money, payments
from bench.load import LoadOptions, run_load
from bench.report import write_reports
from tests.process_harness import fork_from_zygote


async def test_load_runner_measures_every_figure(tmp_path: Path) -> None:
    options = LoadOptions(packs=3, pack_photos=7, time_factor=0.02, deadline_seconds=50, launch=fork_from_zygote)
    record = await run_load(options)
    figures = record.figures

    assert figures["finished_in_time"], figures
    assert (figures["packs"], figures["packs_finished"], figures["users_failed"]) == (3, 3, 0)
    assert figures["photos_delivered"] + figures["photos_credited_back"] == 21
    # Every delivered portrait has its latency, every pack its payment → first createTask.
    assert figures["added_latency_s"]["n"] == figures["photos_delivered"] > 0
    assert figures["payment_to_first_create_s"]["n"] == 3
    assert figures["kie_creates"] >= 21 and figures["kie_max_creates_in_window"] <= 20
    assert figures["telegram_sends_per_pack"]["sendMediaGroup"] >= 1
    assert figures["cpu_seconds"] > 0 and figures["peak_rss_mib"] > 10
    assert figures["db_statements_per_photo"] > 1  # counted inside the app, read from its /metrics

    out = tmp_path / "load"
    write_reports([{"kind": "latency", **figures, "series": record.series}], out, command="smoke")
    document = json.loads(out.with_suffix(".json").read_text())
    run = document["runs"][0]
    for key in ("added_latency_s", "payment_to_first_create_s", "kie_budget_used", "kie_429", "cpu_seconds_per_pack"):
        assert key in run
    assert out.with_suffix(".png").stat().st_size > 10_000


async def test_chaos_payment_notifications_credit_once_and_deliver_once() -> None:
    options = LoadOptions(pack_photos=7, time_factor=0.02, deadline_seconds=50, launch=fork_from_zygote)
    # 8 buyers: card notifications duplicated ×10 / reordered / lost / normal, Stars messages ×10; 2 forgers.
    result = await payments(options, 0.1)

    assert result["packs"] == 8 and result["forged"] == 2, result
    assert result["card_notices"] == {"duplicated": 1, "reordered": 1, "lost": 1, "normal": 1}
    assert result["ok"], result["problems"]
    assert "jobs 8," in result["invariants"] and "duplicates 0" in result["invariants"]


async def test_chaos_money_keeps_every_invariant() -> None:
    options = LoadOptions(time_factor=0.02, deadline_seconds=90, launch=fork_from_zygote)
    # One buyer of each kind: card, card then Stars, Stars then card (both crossed on one order),
    # repeated notifications, refunded by /refund (twice), and a double tap on returned credits.
    result = await money(options, 0.1)

    assert result["kinds"] == dict.fromkeys(MONEY_KINDS, 1), result
    assert result["packs"] == len(MONEY_KINDS) and result["refunds"] == 1, result
    assert result["ok"], result["problems"]
