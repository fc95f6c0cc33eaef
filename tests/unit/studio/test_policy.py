from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from studio.latency import LatencyEstimate
from studio.policy import (
    DEFAULT_PROVIDER_POLICIES,
    KIE_POLICY,
    REPLICATE_POLICY,
    SELFHOSTED_POLICY,
    BreakerState,
    CircuitBreaker,
    Decision,
    DecisionAction,
    FallbackPolicy,
    PolicyError,
    ProviderPolicy,
    choose_provider,
    decide_after_failure,
    is_stuck,
    next_poll_at,
    parse_fallback_policy,
    peek_provider,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
KIE, REPLICATE = 0, 1


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture()
def policy() -> FallbackPolicy:
    return FallbackPolicy()


def test_default_policy_is_kie_then_replicate(policy: FallbackPolicy) -> None:
    kie, replicate = policy.providers
    assert (kie.name, kie.max_attempts, kie.backoff_seconds) == ("kie", 3, (2.0, 10.0, 30.0))
    assert (kie.stuck_after_seconds, kie.first_poll_after_seconds) == (600.0, 25.0)
    assert (replicate.name, replicate.max_attempts, replicate.backoff_seconds) == (
        "replicate",
        2,
        (5.0, 20.0),
    )
    assert (replicate.stuck_after_seconds, replicate.first_poll_after_seconds) == (600.0, 15.0)
    assert policy.index_of("replicate") == REPLICATE


def test_policy_round_trips_through_json(policy: FallbackPolicy) -> None:
    restored = FallbackPolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert restored == policy


def test_policy_from_settings_dict() -> None:
    loaded = FallbackPolicy.from_dict(
        {
            "providers": [
                {
                    "name": "replicate",
                    "max_attempts": 1,
                    "backoff_seconds": [],
                    "stuck_after_seconds": 300,
                    "first_poll_after_seconds": 10,
                    "poll_every_seconds": 3,
                }
            ]
        }
    )
    assert loaded.providers == (ProviderPolicy("replicate", 1, (), 300.0, 10.0, 3.0),)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_atempts": 3}, "unknown keys"),
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"max_attempts": "3"}, "expected an integer"),
        ({"backoff_seconds": []}, "at least one backoff"),
        ({"backoff_seconds": [1, -1]}, "must not be negative"),
        ({"stuck_after_seconds": 0}, "must be positive"),
        ({"poll_every_seconds": True}, "expected a number"),
        ({"breaker_failures": 0}, "breaker_failures must be at least 1"),
        ({"breaker_cooldown_seconds": 0}, "breaker_cooldown_seconds must be positive"),
        ({"breaker_cooldown": 5}, "unknown keys"),
    ],
)
def test_bad_provider_policy_is_refused(change: dict[str, object], message: str) -> None:
    data = {**FallbackPolicy().to_dict()["providers"][0], **change}
    with pytest.raises(PolicyError, match=message):
        FallbackPolicy.from_dict({"providers": [data]})


def test_a_policy_without_breaker_keys_keeps_the_default_breaker_and_one_with_them_sets_it() -> None:
    plain = {key: value for key, value in FallbackPolicy().to_dict()["providers"][0].items() if "breaker" not in key}
    kie = FallbackPolicy.from_dict({"providers": [plain]}).providers[0]
    assert (kie.breaker_failures, kie.breaker_window_seconds, kie.breaker_cooldown_seconds) == (5, 60.0, 30.0)
    tuned = FallbackPolicy.from_dict(
        {"providers": [plain | {"breaker_failures": 2, "breaker_cooldown_seconds": 3}]}
    ).providers[0]
    breaker = tuned.new_breaker()
    breaker.record_failure(at(0))
    assert breaker.allow_request(at(0.5))
    breaker.record_failure(at(1))
    assert not breaker.allow_request(at(2)) and breaker.allow_request(at(4.5))  # open, then a probe after 3 s


def test_policy_needs_unique_providers() -> None:
    kie = FallbackPolicy().providers[0]
    with pytest.raises(PolicyError):
        FallbackPolicy(providers=(kie, kie))
    with pytest.raises(PolicyError):
        FallbackPolicy(providers=())


def test_whole_path_retry_fallback_skip(policy: FallbackPolicy) -> None:
    # Kie fails three times (two backoff retries), Replicate twice, then the task is skipped.
    assert decide_after_failure(policy, KIE, 1, True, at(0)) == Decision(DecisionAction.RETRY, KIE, 1, at(2))
    assert decide_after_failure(policy, KIE, 2, True, at(100)) == Decision(DecisionAction.RETRY, KIE, 2, at(110))
    assert decide_after_failure(policy, KIE, 3, True, at(200)) == Decision(
        DecisionAction.FALLBACK, REPLICATE, 0, at(200)
    )
    assert decide_after_failure(policy, REPLICATE, 1, True, at(300)) == Decision(
        DecisionAction.RETRY, REPLICATE, 1, at(305)
    )
    assert decide_after_failure(policy, REPLICATE, 2, True, at(400)) == Decision(DecisionAction.SKIP, None, 0, None)


def test_non_retryable_failure_moves_on_at_once(policy: FallbackPolicy) -> None:
    # Content policy, validation or an empty balance on Kie: no retry on Kie.
    fallback = decide_after_failure(policy, KIE, 1, False, at(0))
    assert (fallback.action, fallback.provider_index, fallback.retry_at) == (
        DecisionAction.FALLBACK,
        REPLICATE,
        at(0),
    )
    assert decide_after_failure(policy, REPLICATE, 1, False, at(0)).action is DecisionAction.SKIP


def test_backoff_repeats_its_last_value_for_extra_retries() -> None:
    single = FallbackPolicy(providers=(ProviderPolicy("only", 5, (1.0, 4.0), 600, 20, 5),))
    delays = [decide_after_failure(single, 0, attempt, True, at(0)).retry_at for attempt in (1, 2, 3, 4)]
    assert delays == [at(1), at(4), at(4), at(4)]
    assert decide_after_failure(single, 0, 5, True, at(0)).action is DecisionAction.SKIP


def test_failure_without_attempt_is_a_bug(policy: FallbackPolicy) -> None:
    with pytest.raises(ValueError):
        decide_after_failure(policy, KIE, 0, True, at(0))
    with pytest.raises(IndexError):
        decide_after_failure(policy, 2, 1, True, at(0))


def test_stuck_after_the_provider_deadline(policy: FallbackPolicy) -> None:
    assert not is_stuck(policy, KIE, at(0), at(599))
    assert is_stuck(policy, KIE, at(0), at(600))
    assert is_stuck(policy, REPLICATE, at(0), at(3600))


def test_with_callbacks_polling_is_only_the_backstop(policy: FallbackPolicy) -> None:
    first = next_poll_at(policy, KIE, at(0), 0, at(1), callbacks_enabled=True, poll_interval_seconds=60)
    assert first == at(60)  # no recent latency known: an interval after submission
    assert next_poll_at(policy, KIE, at(0), 1, at(60), True, 60) == at(120)
    # The last backstop poll lands on the stuck deadline, not after it.
    assert next_poll_at(policy, KIE, at(0), 9, at(570), True, 60) == at(600)


def test_with_callbacks_the_backstop_waits_beyond_the_recent_p95(policy: FallbackPolicy) -> None:
    recent = LatencyEstimate(low_seconds=12.0, high_seconds=38.0, samples=50)
    # p95 plus half of it: a callback is late only for a task clearly slower than recent ones.
    assert next_poll_at(policy, KIE, at(0), 0, at(1), True, 60, latency=recent) == at(57)
    # A fast provider: the grace is at least one poll step.
    fast = LatencyEstimate(low_seconds=1.0, high_seconds=2.0, samples=50)
    assert next_poll_at(policy, KIE, at(0), 0, at(0), True, 60, latency=fast) == at(2.0 + 3.0)
    # Then every interval, as before.
    assert next_poll_at(policy, KIE, at(0), 1, at(57), True, 60, latency=recent) == at(117)
    # A very slow provider still gets its backstop before the stuck deadline.
    slow = LatencyEstimate(low_seconds=300.0, high_seconds=500.0, samples=50)
    assert next_poll_at(policy, KIE, at(0), 0, at(0), True, 60, latency=slow) == at(600)


def _schedule(policy: FallbackPolicy, index: int, until: float, latency: LatencyEstimate | None) -> list[float]:
    """The poll times (seconds after submission) of a task that is never done, until ``until``."""
    times: list[float] = []
    now = at(0)
    while True:
        now = next_poll_at(policy, index, at(0), len(times), now, False, 60, latency=latency)
        elapsed = (now - at(0)).total_seconds()
        if elapsed > until:
            return times
        times.append(elapsed)
        if elapsed >= 600:
            return times


def test_without_callbacks_polls_start_near_the_static_guess_then_back_off_gently(policy: FallbackPolicy) -> None:
    assert next_poll_at(policy, KIE, at(0), 0, at(0), False, 60) == at(25)
    assert next_poll_at(policy, REPLICATE, at(0), 0, at(0), False, 60) == at(15)
    times = _schedule(policy, KIE, 400, None)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert times[:3] == [25.0, 28.0, 31.0]  # every 3 s while the task is within the guess
    assert gaps == sorted(gaps)  # then gently sparser
    assert max(gaps) == 60.0  # capped by the poll interval


def test_without_callbacks_the_first_poll_follows_recent_latency(policy: FallbackPolicy) -> None:
    recent = LatencyEstimate(low_seconds=40.0, high_seconds=90.0, samples=50)
    assert next_poll_at(policy, KIE, at(0), 0, at(0), False, 60, latency=recent) == at(34)  # 0.85 x p10
    fast = LatencyEstimate(low_seconds=4.0, high_seconds=9.0, samples=50)
    assert next_poll_at(policy, KIE, at(0), 0, at(0), False, 60, latency=fast) == at(3.4)
    times = _schedule(policy, KIE, 200, recent)
    # Every step while within recent latency (34 → 90 s), sparser only for a task later than p95.
    within = [t for t in times if t <= 90]
    assert [round(b - a, 6) for a, b in itertools.pairwise(within)] == [3.0] * (len(within) - 1)
    later = [t for t in times if t > 90]
    later_gaps = [b - a for a, b in itertools.pairwise(later)]
    assert later_gaps == sorted(later_gaps) and later_gaps[-1] > 3.0


def test_the_poll_step_is_the_policy_value_so_it_scales(policy: FallbackPolicy) -> None:
    # bench/load.py compresses time through the policy: a tenth of every duration, a tenth of the step.
    scaled = FallbackPolicy.from_dict(
        {
            "providers": [
                {**p, "stuck_after_seconds": 60.0, "first_poll_after_seconds": 2.5, "poll_every_seconds": 0.3}
                for p in policy.to_dict()["providers"]
            ]
        }
    )
    recent = LatencyEstimate(low_seconds=1.0, high_seconds=4.0, samples=50)
    first = next_poll_at(scaled, KIE, at(0), 0, at(0), False, 6, latency=recent)
    assert first == at(0.85)
    assert next_poll_at(scaled, KIE, at(0), 1, first, False, 6, latency=recent) == first + timedelta(seconds=0.3)


def test_poll_is_never_in_the_past(policy: FallbackPolicy) -> None:
    # The scheduler was down: the first poll is overdue, so it is due now.
    assert next_poll_at(policy, KIE, at(0), 0, at(500), False, 60) == at(500)
    assert next_poll_at(policy, KIE, at(0), 4, at(700), True, 60) == at(700)
    recent = LatencyEstimate(low_seconds=12.0, high_seconds=38.0, samples=50)
    assert next_poll_at(policy, KIE, at(0), 0, at(500), True, 60, latency=recent) == at(500)


def test_breaker_opens_after_threshold_failures_in_window() -> None:
    breaker = CircuitBreaker(failure_threshold=3, window_seconds=60, cooldown_seconds=30)
    breaker.record_failure(at(0))
    breaker.record_failure(at(10))
    assert breaker.state(at(10)) is BreakerState.CLOSED and breaker.allow_request(at(10))
    breaker.record_failure(at(20))
    assert breaker.state(at(20)) == "open"
    assert not breaker.allow_request(at(49))


def test_breaker_forgets_failures_outside_the_window() -> None:
    breaker = CircuitBreaker(failure_threshold=3, window_seconds=60, cooldown_seconds=30)
    breaker.record_failure(at(0))
    breaker.record_failure(at(30))
    breaker.record_failure(at(61))  # the first failure is out of the window by now
    assert breaker.state(at(61)) is BreakerState.CLOSED
    breaker.record_failure(at(62))
    assert breaker.state(at(62)) is BreakerState.OPEN


def test_success_ends_the_failure_streak() -> None:
    breaker = CircuitBreaker(failure_threshold=3)
    breaker.record_failure(at(0))
    breaker.record_failure(at(1))
    breaker.record_success(at(2))
    breaker.record_failure(at(3))
    breaker.record_failure(at(4))
    assert breaker.state(at(4)) is BreakerState.CLOSED


def test_half_open_allows_one_probe_and_success_closes() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=30)
    breaker.record_failure(at(0))
    assert breaker.state(at(29)) is BreakerState.OPEN
    assert breaker.state(at(30)) == "half_open"
    assert breaker.allow_request(at(30))
    assert not breaker.allow_request(at(31))  # the probe is still out
    breaker.record_success(at(35))
    assert breaker.state(at(35)) is BreakerState.CLOSED
    assert breaker.allow_request(at(36)) and breaker.allow_request(at(36))


def test_half_open_probe_failure_reopens_for_a_new_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=30)
    breaker.record_failure(at(0))
    assert breaker.allow_request(at(30))
    breaker.record_failure(at(40))
    assert breaker.state(at(69)) is BreakerState.OPEN
    assert not breaker.allow_request(at(69))
    assert breaker.state(at(70)) is BreakerState.HALF_OPEN
    assert breaker.allow_request(at(70))


def test_lost_probe_is_given_up_after_a_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=30)
    breaker.record_failure(at(0))
    assert breaker.allow_request(at(30))
    assert not breaker.allow_request(at(59))
    assert breaker.allow_request(at(60))


def test_late_results_while_open_change_nothing() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=30)
    breaker.record_failure(at(0))
    breaker.record_failure(at(10))
    breaker.record_success(at(20))
    assert breaker.state(at(29)) is BreakerState.OPEN
    assert breaker.state(at(30)) is BreakerState.HALF_OPEN


def test_breaker_round_trips_through_json_mid_state() -> None:
    breaker = CircuitBreaker(failure_threshold=2, window_seconds=45, cooldown_seconds=20)
    breaker.record_failure(at(0))
    restored = CircuitBreaker.from_dict(json.loads(json.dumps(breaker.to_dict())))
    assert restored == breaker
    restored.record_failure(at(5))
    assert restored.state(at(5)) is BreakerState.OPEN
    assert restored.allow_request(at(25))
    probing = CircuitBreaker.from_dict(json.loads(json.dumps(restored.to_dict())))
    assert probing.state(at(26)) is BreakerState.HALF_OPEN
    assert not probing.allow_request(at(26))  # the probe taken before saving is still out


def test_breaker_from_bad_dict_is_refused() -> None:
    with pytest.raises(PolicyError):
        CircuitBreaker.from_dict({"failure_threshold": 5})
    with pytest.raises(PolicyError):
        CircuitBreaker.from_dict({**CircuitBreaker().to_dict(), "opened_at": "yesterday"})


def test_choose_provider_routes_around_paused_and_open(policy: FallbackPolicy) -> None:
    breakers = {"kie": CircuitBreaker(failure_threshold=1), "replicate": CircuitBreaker(failure_threshold=1)}
    assert choose_provider(policy, breakers, set(), at(0)) == KIE
    assert choose_provider(policy, {}, set(), at(0)) == KIE
    assert choose_provider(policy, breakers, {"kie"}, at(0)) == REPLICATE
    breakers["kie"].record_failure(at(0))
    assert choose_provider(policy, breakers, set(), at(1)) == REPLICATE
    breakers["replicate"].record_failure(at(1))
    assert choose_provider(policy, breakers, set(), at(2)) is None
    assert choose_provider(policy, breakers, {"kie", "replicate"}, at(100)) is None


def test_choose_provider_sends_one_probe_to_a_half_open_provider(policy: FallbackPolicy) -> None:
    breakers = {"kie": CircuitBreaker(failure_threshold=1, cooldown_seconds=30)}
    breakers["kie"].record_failure(at(0))
    assert choose_provider(policy, breakers, set(), at(30)) == KIE  # the probe
    assert choose_provider(policy, breakers, set(), at(31)) == REPLICATE
    breakers["kie"].record_success(at(40))
    assert choose_provider(policy, breakers, set(), at(41)) == KIE


def test_peek_provider_routes_like_choose_provider_but_never_takes_the_probe(policy: FallbackPolicy) -> None:
    breakers = {"kie": CircuitBreaker(failure_threshold=1, cooldown_seconds=30)}
    assert peek_provider(policy, breakers, set(), at(0)) == KIE
    assert peek_provider(policy, breakers, {"kie"}, at(0)) == REPLICATE
    assert peek_provider(policy, breakers, {"kie", "replicate"}, at(0)) is None
    breakers["kie"].record_failure(at(0))
    assert peek_provider(policy, breakers, set(), at(1)) == REPLICATE  # open
    assert peek_provider(policy, breakers, set(), at(30)) == KIE  # half-open, asked twice
    assert peek_provider(policy, breakers, set(), at(30)) == KIE
    assert choose_provider(policy, breakers, set(), at(30)) == KIE  # the probe is still there to take


def provider(**change: object) -> ProviderPolicy:
    fields: dict[str, object] = {**FallbackPolicy().to_dict()["providers"][0], "backoff_seconds": (2.0,), **change}
    return ProviderPolicy(**fields)  # type: ignore[arg-type]  # the wrong values are the point


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "provider name must not be empty"),
        ({"max_attempts": 2, "backoff_seconds": ()}, "kie: retries need at least one backoff value"),
        ({"backoff_seconds": (1.0, -0.5)}, "kie: backoff values must not be negative"),
        ({"stuck_after_seconds": 0.0}, "kie: stuck_after_seconds must be positive"),
        ({"first_poll_after_seconds": 0.0}, "kie: first_poll_after_seconds must be positive"),
        ({"poll_every_seconds": -1.0}, "kie: poll_every_seconds must be positive"),
    ],
)
def test_a_provider_policy_that_cannot_work_names_its_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=f"^{message}$"):
        provider(**change)


def test_a_retry_may_follow_at_once_and_a_single_attempt_needs_no_backoff() -> None:
    assert provider(backoff_seconds=(0.0, 0.5)).backoff_seconds == (0.0, 0.5)
    assert provider(max_attempts=1, backoff_seconds=()).max_attempts == 1
    with pytest.raises(ValueError, match=r"^retry numbers start at 1, got 0$"):
        provider().backoff_before_retry(0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": 5}, "provider policy: name must be a string"),
        ({"backoff_seconds": "2"}, "kie: backoff_seconds must be a list of numbers"),
        ({"max_attempts": 3.0}, "kie.max_attempts: expected an integer"),
        ({"backoff_seconds": [1, "2"]}, "kie.backoff_seconds: expected a number"),
        ({"stuck_after_seconds": "600"}, "kie.stuck_after_seconds: expected a number"),
        ({"first_poll_after_seconds": None}, "kie.first_poll_after_seconds: expected a number"),
        ({"poll_every_seconds": "3"}, "kie.poll_every_seconds: expected a number"),
    ],
)
def test_a_settings_typo_names_the_provider_and_field(change: dict[str, object], message: str) -> None:
    data = {**FallbackPolicy().to_dict()["providers"][0], **change}
    with pytest.raises(PolicyError, match=f"^{message}$"):
        FallbackPolicy.from_dict({"providers": [data]})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"providers": "kie"}, 'a fallback policy is {"providers": [...]}'),
        ({"providers": [], "primary": "kie"}, 'a fallback policy is {"providers": [...]}'),
        ({"providers": ["kie"]}, "each provider policy must be an object"),
        ({"providers": []}, "a fallback policy needs at least one provider"),
    ],
)
def test_a_fallback_policy_in_another_shape_is_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=f"^{re.escape(message)}$"):
        FallbackPolicy.from_dict(data)


def test_lookups_past_the_providers_say_what_was_asked(policy: FallbackPolicy) -> None:
    with pytest.raises(PolicyError, match=r"^provider names must be unique, got \['kie', 'kie'\]$"):
        FallbackPolicy(providers=(KIE_POLICY, KIE_POLICY))
    with pytest.raises(IndexError, match=r"^no provider at index 2$"):
        policy.provider(2)
    with pytest.raises(KeyError, match="no provider named 'fal'"):
        policy.index_of("fal")


def test_an_admins_switch_puts_one_provider_first_and_keeps_the_rest_in_order(policy: FallbackPolicy) -> None:
    assert policy.with_primary("replicate").providers == (REPLICATE_POLICY, KIE_POLICY)
    assert policy.with_primary("kie") == policy
    three = FallbackPolicy(providers=(KIE_POLICY, REPLICATE_POLICY, provider(name="fal")))
    assert [p.name for p in three.with_primary("fal").providers] == ["fal", "kie", "replicate"]
    with pytest.raises(KeyError):
        policy.with_primary("fal")


def test_bad_arguments_to_the_decisions_are_refused_with_the_value(policy: FallbackPolicy) -> None:
    with pytest.raises(ValueError, match=r"^a failure implies at least one attempt, got 0$"):
        decide_after_failure(policy, KIE, 0, True, at(0))
    with pytest.raises(ValueError, match=r"^polls_done must not be negative, got -1$"):
        next_poll_at(policy, KIE, at(0), -1, at(0), False)
    with pytest.raises(ValueError, match=r"^poll_interval_seconds must be positive$"):
        next_poll_at(policy, KIE, at(0), 1, at(0), True, poll_interval_seconds=0)
    # Any positive interval is an interval, a sub-second one too.
    assert next_poll_at(policy, KIE, at(0), 1, at(10), True, poll_interval_seconds=0.5) == at(10.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold must be at least 1"),
        ({"window_seconds": 0}, "window_seconds and cooldown_seconds must be positive"),
        ({"cooldown_seconds": 0}, "window_seconds and cooldown_seconds must be positive"),
    ],
)
def test_a_breaker_that_could_never_open_or_close_is_refused(change: dict[str, float], message: str) -> None:
    with pytest.raises(PolicyError, match=f"^{message}$"):
        CircuitBreaker(**change)  # type: ignore[arg-type]  # the keys are CircuitBreaker's own


def test_a_breaker_takes_sub_second_windows() -> None:
    breaker = CircuitBreaker(failure_threshold=1, window_seconds=0.5, cooldown_seconds=0.5)
    breaker.record_failure(at(0))
    assert breaker.state(at(0.4)) is BreakerState.OPEN
    assert breaker.state(at(0.5)) is BreakerState.HALF_OPEN


def test_a_failure_exactly_one_window_old_no_longer_counts() -> None:
    breaker = CircuitBreaker(failure_threshold=2, window_seconds=60)
    breaker.record_failure(at(0))
    breaker.record_failure(at(60))
    assert breaker.state(at(60)) is BreakerState.CLOSED


def test_a_probes_success_closes_the_breaker_with_nothing_left_of_the_probe() -> None:
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=30)
    breaker.record_failure(at(0))
    assert breaker.allow_request(at(30))
    breaker.record_success(at(31))
    assert (breaker.opened_at, breaker.probe_started_at, breaker.failures) == (None, None, [])
    assert breaker.to_dict()["probe_started_at"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"failure_threshold": "5"}, "failure_threshold: expected an integer"),
        ({"window_seconds": "60"}, "window_seconds: expected a number"),
        ({"cooldown_seconds": None}, "cooldown_seconds: expected a number"),
    ],
)
def test_a_stored_breaker_with_a_wrong_value_names_it(change: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=f"^not a circuit breaker: {message}$"):
        CircuitBreaker.from_dict({**CircuitBreaker().to_dict(), **change})


def test_a_stored_breaker_without_failures_has_none() -> None:
    stored = CircuitBreaker().to_dict()
    del stored["failures"]
    assert CircuitBreaker.from_dict(stored) == CircuitBreaker()


def test_fallback_policy_text_is_empty_a_provider_order_or_json() -> None:
    assert parse_fallback_policy("") == FallbackPolicy(providers=(KIE_POLICY, REPLICATE_POLICY, SELFHOSTED_POLICY))
    assert parse_fallback_policy("  ") == parse_fallback_policy("")
    assert parse_fallback_policy("selfhosted,kie,replicate").providers == (
        SELFHOSTED_POLICY,
        KIE_POLICY,
        REPLICATE_POLICY,
    )
    assert parse_fallback_policy(" kie , selfhosted ,").providers == (KIE_POLICY, SELFHOSTED_POLICY)
    assert parse_fallback_policy("replicate").providers == (REPLICATE_POLICY,)
    custom = FallbackPolicy(providers=(provider(name="selfhosted", max_attempts=1), KIE_POLICY))
    assert parse_fallback_policy(json.dumps(custom.to_dict())) == custom
    assert set(DEFAULT_PROVIDER_POLICIES) == {"kie", "replicate", "selfhosted"}
    assert all(DEFAULT_PROVIDER_POLICIES[name].name == name for name in DEFAULT_PROVIDER_POLICIES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kie,fal", "unknown providers ['fal']; known: kie, replicate, selfhosted"),
        ("kie,kie", "provider names must be unique, got ['kie', 'kie']"),
        (",", "a fallback policy needs at least one provider"),
        ("{not json", "not JSON: "),
        ('{"providers": "kie"}', '{"providers": [...]}'),
    ],
)
def test_fallback_policy_text_that_names_no_usable_order_is_refused(text: str, message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)):
        parse_fallback_policy(text)


def test_the_generator_is_retried_sooner_than_the_hosted_providers() -> None:
    """Our own GPU box: failures are mostly a worker restarting, and a task takes seconds."""
    assert SELFHOSTED_POLICY.max_attempts == 3 and SELFHOSTED_POLICY.backoff_seconds == (2.0, 10.0)
    assert SELFHOSTED_POLICY.first_poll_after_seconds < KIE_POLICY.first_poll_after_seconds
    assert SELFHOSTED_POLICY.poll_every_seconds == 3.0 and SELFHOSTED_POLICY.stuck_after_seconds == 600.0
