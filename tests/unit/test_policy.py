"""Step policy: which failures are retried, how long between tries, where a failed step goes."""

from __future__ import annotations

import random
from typing import Any

import pytest

from stepstream import policy
from stepstream.policy import DEFAULT_RETRY_ON, Retry, accepts, on_error, status_matches

# -- Retry.of -------------------------------------------------------------------------


def test_retry_of_step_without_retry_key_tries_once() -> None:
    retry = Retry.of({"id": "fetch", "type": "http"})

    assert retry.attempts == 1
    assert retry == Retry()


def test_retry_of_empty_retry_mapping_takes_the_model_defaults() -> None:
    retry = Retry.of({"retry": {}})

    assert (retry.attempts, retry.initial, retry.multiplier) == (3, 1.0, 2.0)
    assert retry.max_delay == 300.0
    assert retry.jitter is True
    assert retry.on == DEFAULT_RETRY_ON == ("network", "timeout", 408, 429, "5xx")


def test_retry_of_reads_every_key_of_the_yaml_mapping() -> None:
    config = {"retry": {"attempts": 5, "backoff": {"initial": 0.5, "multiplier": 3, "max": 20},
                        "jitter": False, "on": ["network", 404, "4xx"]}}

    retry = Retry.of(config)

    assert retry == Retry(attempts=5, initial=0.5, multiplier=3.0, max_delay=20.0, jitter=False,
                          on=("network", 404, "4xx"))


def test_retry_of_backoff_written_as_null_keeps_default_waits() -> None:
    retry = Retry.of({"retry": {"attempts": 2, "backoff": None}})

    assert (retry.attempts, retry.initial, retry.multiplier) == (2, 1.0, 2.0)
    assert retry.max_delay == 300.0


def test_retry_of_retry_written_as_null_tries_once() -> None:
    assert Retry.of({"retry": None}).attempts == 1


# -- Retry.covers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status_code", "covered"),
    [
        ("network", None, True),
        ("timeout", None, True),
        ("http_status", 408, True),
        ("http_status", 429, True),
        ("http_status", 500, True),
        ("http_status", 503, True),
        ("http_status", 599, True),
        ("http_status", 400, False),
        ("http_status", 404, False),
        ("http_status", 499, False),
        ("template", None, False),
        ("expression", None, False),
        ("config", None, False),
        ("crash", None, False),
        ("api", None, False),
    ],
)
def test_retry_covers_by_default_network_timeout_408_429_and_5xx(
    kind: str, status_code: int | None, covered: bool
) -> None:
    assert Retry(attempts=3).covers(kind, status_code) is covered


def test_retry_covers_a_listed_kind_whatever_the_status() -> None:
    retry = Retry(on=("http_status",))

    assert retry.covers("http_status", 404)
    assert retry.covers("http_status", 200)
    assert not retry.covers("network", None)


def test_retry_covers_listed_statuses_only_when_the_failure_has_one() -> None:
    retry = Retry(on=(404, 409))

    assert retry.covers("http_status", 404)
    assert retry.covers("api", 409)  # a Messages API error with that status
    assert not retry.covers("http_status", 503)  # the list replaces the defaults
    assert not retry.covers("network", None)
    assert not retry.covers("timeout", None)


@pytest.mark.parametrize(("status_code", "covered"), [(400, True), (451, True), (499, True),
                                                      (399, False), (500, False)])
def test_retry_covers_a_status_class_by_its_first_digit(status_code: int, covered: bool) -> None:
    assert Retry(on=("4xx",)).covers("http_status", status_code) is covered


def test_retry_covers_nothing_when_on_is_empty() -> None:
    retry = Retry(on=())

    assert not retry.covers("network", None)
    assert not retry.covers("http_status", 503)


# -- Retry.delay ----------------------------------------------------------------------


def test_retry_delay_grows_by_the_multiplier_from_the_initial_wait() -> None:
    retry = Retry(attempts=6, initial=0.5, multiplier=3.0, jitter=False)

    assert [retry.delay(n) for n in range(1, 5)] == [0.5, 1.5, 4.5, 13.5]


def test_retry_delay_is_capped_at_max() -> None:
    retry = Retry(attempts=10, initial=1.0, multiplier=2.0, max_delay=5.0, jitter=False)

    assert [retry.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_retry_delay_multiplier_one_keeps_a_constant_wait() -> None:
    retry = Retry(initial=2.0, multiplier=1.0, jitter=False)

    assert {retry.delay(n) for n in range(1, 10)} == {2.0}


def test_retry_delay_with_jitter_stays_between_half_and_all_of_the_backoff() -> None:
    retry = Retry(attempts=10, initial=1.0, multiplier=2.0, max_delay=5.0, jitter=True)
    rng = random.Random(7)

    for failed_attempt in range(1, 8):
        full = min(5.0, 2.0 ** (failed_attempt - 1))
        delays = [retry.delay(failed_attempt, rng) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays), failed_attempt
        assert max(delays) - min(delays) > full / 4  # spread, not one fixed value


def test_retry_delay_with_jitter_never_exceeds_the_cap() -> None:
    retry = Retry(initial=100.0, multiplier=10.0, max_delay=30.0, jitter=True)
    rng = random.Random(1)

    assert max(retry.delay(6, rng) for _ in range(500)) <= 30.0


def test_retry_delay_with_the_same_seed_is_repeatable() -> None:
    retry = Retry(initial=1.0, jitter=True)

    first = [retry.delay(3, random.Random(42)) for _ in range(3)]

    assert len(set(first)) == 1
    assert first[0] != retry.delay(3, random.Random(43))


# -- accepts and status_matches -------------------------------------------------------


@pytest.mark.parametrize(("status", "accepted"), [(100, True), (200, True), (204, True),
                                                  (302, True), (399, True), (400, False),
                                                  (404, False), (500, False)])
def test_accepts_by_default_below_400(status: int, accepted: bool) -> None:
    assert accepts(None, status) is accepted


@pytest.mark.parametrize("status", [200, 404, 500, 599])
def test_accepts_any_takes_every_status(status: int) -> None:
    assert accepts("any", status)


def test_accepts_a_list_takes_only_what_it_lists() -> None:
    accept = [404, "2xx"]

    assert accepts(accept, 404)
    assert accepts(accept, 201)
    assert not accepts(accept, 302)  # a list replaces the default, it does not add to it
    assert not accepts(accept, 500)


@pytest.mark.parametrize(
    ("status", "patterns", "matches"),
    [
        (503, ["5xx"], True),
        (503, [503], True),
        (503, [500, 502], False),
        (503, ["4xx"], False),
        (100, ["1xx"], True),
        (404, (404,), True),
        (503, [], False),
        (503, ["6xx", "5XX", "50x", "network"], False),  # not classes: never match
        (503, ["503"], False),  # a status as text is no status
    ],
)
def test_status_matches_numbers_and_classes(
    status: int, patterns: list[int | str], matches: bool
) -> None:
    assert status_matches(status, patterns) is matches


# -- on_error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "decision"),
    [
        ({}, ("fail", None)),
        ({"on_error": "fail"}, ("fail", None)),
        ({"on_error": "continue"}, ("continue", None)),
        ({"on_error": {"goto": "recover"}}, ("goto", "recover")),
    ],
)
def test_on_error_reads_fail_continue_or_goto(
    config: dict[str, Any], decision: tuple[str, str | None]
) -> None:
    assert on_error(config) == decision


@pytest.mark.parametrize(
    ("config", "target"),
    [({}, None), ({"on_error": "continue"}, None), ({"on_error": {"goto": "recover"}}, "recover"),
     ({"on_error": {}}, None)],
)
def test_goto_target_names_the_step_only_for_a_goto(
    config: dict[str, Any], target: str | None
) -> None:
    assert policy.goto_target(config) == target
