"""Streaming delivery rules and the per-chat send budget (studio.delivery): pure, no server, milliseconds."""

from __future__ import annotations

import random

import pytest

from studio.delivery import ChatBudget, ChatBudgets, Ready, Send, next_send, progress_edit_due

WINDOW = 3.0


def budget(now: float = 0.0, *, capacity: int = 10, rate: float = 1.0, margin: float = 0.0) -> ChatBudget:
    return ChatBudget(capacity, rate, now, margin=margin)


def ready(*ready_since: float, documents: tuple[int, ...] = ()) -> list[Ready]:
    return [Ready(index, moment, index in documents) for index, moment in enumerate(ready_since)]


def plan(items: list[Ready], now: float, *, started: bool = True, more: bool = True, chat: ChatBudget | None = None):
    return next_send(items, started=started, more_coming=more, now=now, window=WINDOW, budget=chat or budget(now))


def test_nothing_ready_nothing_to_send() -> None:
    assert plan([], 5.0) is None


def test_first_portrait_of_a_pack_goes_the_moment_it_is_stored() -> None:
    assert plan(ready(10.0), 10.0, started=False) == Send(1, 10.0)


def test_first_send_takes_everything_ready() -> None:
    assert plan(ready(9.0, 9.5, 10.0), 10.0, started=False) == Send(3, 10.0)


def test_a_lone_portrait_waits_the_window_for_company() -> None:
    assert plan(ready(10.0), 10.5) == Send(1, 10.0 + WINDOW)


def test_a_lone_portrait_goes_at_once_when_no_company_can_come() -> None:
    assert plan(ready(10.0), 10.5, more=False) == Send(1, 10.5)


def test_two_ready_go_together_now() -> None:
    assert plan(ready(10.0, 10.2), 10.3) == Send(2, 10.3)


def test_an_album_holds_at_most_ten() -> None:
    assert plan(ready(*[float(i) for i in range(14)]), 20.0) == Send(10, 20.0)


def test_album_size_follows_what_the_chat_can_take_now() -> None:
    chat = budget(0.0)
    chat.reserve(6, 0.0)  # four left
    assert plan(ready(*[0.0] * 8), 0.0, chat=chat) == Send(4, 0.0)


def test_an_exhausted_chat_delays_the_album_until_two_fit() -> None:
    chat = budget(0.0)
    chat.reserve(10, 0.0)
    sent = plan(ready(0.0, 0.0, 0.0), 0.0, chat=chat)
    assert sent is not None and sent.count == 2 and sent.at == pytest.approx(2.0)


def test_a_document_goes_alone_and_cuts_the_album_before_it() -> None:
    assert plan(ready(1.0, 2.0, documents=(0,)), 3.0) == Send(1, 3.0, as_document=True)
    assert plan(ready(1.0, 2.0, 2.5, documents=(2,)), 3.0) == Send(2, 3.0)
    # a photo followed by a document can get no company: it goes now, not after the window
    assert plan(ready(2.5, 2.6, documents=(1,)), 3.0) == Send(1, 3.0)


def test_a_slow_earlier_task_holds_nothing_back() -> None:
    # readiness is all the rules see: task order does not appear in the inputs at all
    assert plan(ready(5.0, 5.1), 5.2) == Send(2, 5.2)


def test_fresh_budget_takes_one_album_then_one_per_second() -> None:
    chat = budget(0.0)
    assert chat.reserve(10, 0.0) == 0.0
    assert chat.reserve(1, 0.0) == pytest.approx(1.0)
    assert chat.reserve(2, 0.0) == pytest.approx(3.0)


def test_margin_slows_the_refill() -> None:
    chat = ChatBudget(10, 1.0, 0.0, margin=0.1)
    chat.reserve(10, 0.0)
    assert chat.ready_at(1, 0.0) == pytest.approx(1 / 0.9)


def test_a_429_empties_the_chat_for_retry_after() -> None:
    chat = budget(0.0)
    chat.penalize(5, 0.0)
    assert chat.available(4.9) == 0
    assert chat.ready_at(1, 0.0) == pytest.approx(6.0)


def test_no_window_ever_carries_more_than_burst_plus_rate() -> None:
    """Whatever the callers do, the sends a budget lets through fit Telegram's per-chat flood control
    as the fake models it (40 messages per 30 s); album items count one by one."""
    rng = random.Random(5)
    chat = ChatBudget(10, 1.0, 0.0, margin=0.1)
    sends: list[tuple[float, int]] = []
    now = 0.0
    for _ in range(400):
        now += rng.choice([0.0, 0.1, 0.5, 2.0])
        items = rng.choice([1, 1, 2, 3, 10])
        sends.append((chat.reserve(items, now), items))
    for start, _ in sends:
        in_window = sum(items for at, items in sends if start <= at < start + 30.0)
        assert in_window <= 40


def test_budgets_are_per_chat() -> None:
    budgets = ChatBudgets(10, 1.0)
    budgets.of(1, 0.0).reserve(10, 0.0)
    assert budgets.of(2, 0.0).available(0.0) == 10
    assert budgets.of(1, 0.0).available(0.0) == 0


def test_progress_edits_never_go_ahead_of_waiting_portraits() -> None:
    assert progress_edit_due(last_edit_at=None, now=5.0, interval=3.0, waiting=2, budget=budget(5.0)) is None


def test_progress_edits_keep_their_interval_and_the_budget() -> None:
    assert progress_edit_due(last_edit_at=4.0, now=5.0, interval=3.0, waiting=0, budget=budget(5.0)) == 7.0
    chat = budget(5.0)
    chat.reserve(10, 5.0)
    assert progress_edit_due(last_edit_at=None, now=5.0, interval=3.0, waiting=0, budget=chat) == pytest.approx(6.0)


def test_the_global_budget_keeps_any_second_under_thirty() -> None:
    """The middleware's global bucket (a burst of one album, then 25/s less a quarter) against Telegram's
    ~30 messages per second; a plain leaky bucket of 25 would let 50 through in one second."""
    rng = random.Random(9)
    overall = ChatBudget(10, 25.0, 0.0, margin=0.25)
    sends: list[tuple[float, int]] = []
    now = 0.0
    for _ in range(600):
        now += rng.choice([0.0, 0.0, 0.01, 0.2, 1.0])
        items = rng.choice([1, 1, 1, 2, 5, 10])
        sends.append((overall.reserve(items, now), items))
    for start, _ in sends:
        assert sum(items for at, items in sends if start <= at < start + 1.0) <= 30


@pytest.mark.parametrize(
    ("capacity", "rate", "margin"), [(0, 1.0, 0.1), (10, 0.0, 0.1), (10, -1.0, 0.1), (10, 1.0, 1.0), (10, 1.0, -0.1)]
)
def test_a_budget_that_could_never_send_is_refused(capacity: int, rate: float, margin: float) -> None:
    with pytest.raises(ValueError, match=r"^a budget needs capacity >= 1, rate > 0 and 0 <= margin < 1$"):
        ChatBudget(capacity, rate, 0.0, margin=margin)


def test_the_default_budget_is_telegrams_chat_limit_less_a_tenth() -> None:
    assert ChatBudget(1, 1.0, 0.0).rate == pytest.approx(0.9)  # a one-message burst is a budget too
    chat = ChatBudgets().of("chat", 0.0)
    assert (chat.capacity, chat.rate) == (10, pytest.approx(0.9))
    assert ChatBudgets(margin=0.5).of("chat", 0.0).rate == pytest.approx(0.5)


def test_refill_and_penalty_scale_with_the_rate() -> None:
    chat = budget(capacity=10, rate=2.0)
    chat.reserve(10, 0.0)
    assert chat.available(1.0) == 2
    chat.penalize(3.0, 1.0)  # nothing for 3 s: at 2 messages/s that is 6 messages of debt
    assert chat.ready_at(1, 1.0) == pytest.approx(1.0 + 3.0 + 0.5)


def test_sending_nothing_costs_nothing() -> None:
    assert budget().cost(0) == 0


def test_the_oldest_idle_chat_is_forgotten_first_and_only_past_the_limit() -> None:
    budgets = ChatBudgets(limit=2)
    first, second = budgets.of("a", 0.0), budgets.of("b", 0.0)
    assert budgets.of("a", 1.0) is first  # "a" is now the most recent
    assert budgets.of("b", 1.0) is second  # two chats fit the limit of two
    budgets.of("a", 2.0)
    budgets.of("c", 2.0)
    assert budgets.of("a", 3.0) is first
    assert budgets.of("b", 3.0) is not second  # "b" was the idlest: forgotten, full again


def test_a_document_or_a_lone_photo_needs_one_message_of_budget_not_two() -> None:
    for items, more in ((ready(0.0, documents=(0,)), True), (ready(0.0), False)):
        chat = budget()
        chat.reserve(9, 0.0)  # one message left
        sent = plan(items, 0.0, more=more, chat=chat)
        assert sent is not None and (sent.count, sent.at) == (1, 0.0)


def test_two_ready_wait_until_both_fit_rather_than_go_one_by_one() -> None:
    chat = budget()
    chat.reserve(9, 0.0)  # one message left: the pair goes a second later, together
    assert plan(ready(0.0, 0.0), 0.0, chat=chat) == Send(2, 1.0)
