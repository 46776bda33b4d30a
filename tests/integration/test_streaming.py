"""The SSE stream on the local stack: resuming, both modes, headers, heartbeats, clients."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stepstream_local.stack import LocalStack
from stepstream_local.watch import Follower
from tests.integration.conftest import register, stream_url
from tests.support.servers import MockHttpServer

STEPSTREAM = Path(sys.executable).parent / "stepstream"
SLOW_STEPS = 4


@pytest.fixture(scope="module")
def slow_site() -> Iterator[MockHttpServer]:
    """A page that takes a moment, so runs last long enough to interrupt."""
    with MockHttpServer() as site:
        site.route("GET", "/slow", json={"ok": True}, delay=0.15)
        yield site


@pytest.fixture(scope="module")
def slow_workflow(api: httpx.Client, slow_site: MockHttpServer) -> str:
    """A workflow of a trigger and a few slow http steps."""
    steps = "".join(
        f"  - id: wait{n}\n    type: http\n    url: {slow_site.url('/slow')}\n"
        for n in range(SLOW_STEPS)
    )
    text = f"name: slow_steps\nsteps:\n  - id: start\n    type: trigger\n{steps}"
    return register(api, text)


def _start(api: httpx.Client, workflow_id: str) -> tuple[str, str]:
    run = api.post(f"/api/v1/runs/{workflow_id}/execute-async", json={"data": {}}).json()
    return run["id"], run["stream_url"]


def _read_some(api: httpx.Client, url: str, last: int, budget: int) -> list[dict]:
    """Up to ``budget`` events after ``last``, then hang up (a client going away)."""
    events: list[dict] = []
    headers = {"Last-Event-ID": str(last)} if last else {}
    with api.stream("GET", url, headers=headers, timeout=30) as response:
        if response.status_code == 204:
            return events
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if len(events) >= budget or events[-1]["type"].startswith("run_"):
                    if events[-1]["type"] != "run_started":
                        break
    return events


def _follow_with_random_hangups(api: httpx.Client, url: str, seed: int) -> tuple[list, int]:
    chooser = random.Random(seed)
    seen: list[dict] = []
    connections = 0
    while not seen or seen[-1]["type"] not in ("run_completed", "run_failed"):
        last = seen[-1]["seq"] if seen else 0
        seen.extend(_read_some(api, url, last, chooser.randint(1, 3)))
        connections += 1
        assert connections < 200
    return seen, connections


@pytest.mark.parametrize("mode", ["response_stream", "buffered"])
def test_client_hanging_up_at_random_points_gets_every_event_once_in_order(
    api: httpx.Client, slow_workflow: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reconnecting with Last-Event-ID after random hang-ups misses and repeats nothing."""
    monkeypatch.setenv("AWS_LWA_INVOKE_MODE", mode)
    monkeypatch.setenv("LONG_POLL_SECONDS", "2")
    for seed in range(3):
        run_id, url = _start(api, slow_workflow)

        seen, connections = _follow_with_random_hangups(api, url, seed)

        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
        assert seen[-1]["type"] == "run_completed"
        assert connections > 3
        everything = _read_some(api, url, 0, 10_000)
        assert seen == everything


def test_buffered_mode_answers_each_poll_and_ends_the_response(
    api: httpx.Client, slow_workflow: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In buffered mode a response carries what is there and ends; polls resume after it."""
    monkeypatch.setenv("AWS_LWA_INVOKE_MODE", "buffered")
    monkeypatch.setenv("LONG_POLL_SECONDS", "2")
    run_id, url = _start(api, slow_workflow)
    responses, last, seqs = 0, 0, []

    while not seqs or seqs[-1] != last or len(seqs) < 3 + 2 * (SLOW_STEPS + 1):
        response = api.get(url, headers={"Last-Event-ID": str(last)})
        responses += 1
        if response.status_code == 204:
            break
        assert response.headers["content-type"].startswith("text/event-stream")
        ids = [int(line[3:]) for line in response.text.splitlines() if line.startswith("id:")]
        seqs.extend(ids)
        last = ids[-1] if ids else last
        if "event: run_completed" in response.text:
            break

    assert seqs == list(range(1, len(seqs) + 1))
    assert responses > 1


def test_stream_headers_stop_buffering_and_compression(
    api: httpx.Client, slow_workflow: str
) -> None:
    """text/event-stream, no-cache, X-Accel-Buffering: no; no length, no gzip."""
    run_id, url = _start(api, slow_workflow)

    with api.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
        headers = response.headers
        response.read()

    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers and "content-encoding" not in headers


def test_idle_stream_sends_comment_heartbeats(
    api: httpx.Client, slow_workflow: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a step takes its time, the stream sends `:` comment lines to keep proxies open."""
    monkeypatch.setenv("STREAM_HEARTBEAT_SECONDS", "0.05")
    run_id, url = _start(api, slow_workflow)

    with api.stream("GET", url) as response:
        lines = list(response.iter_lines())

    assert any(line.startswith(":") for line in lines)
    assert any(line == "event: run_completed" for line in lines)


def test_finished_run_stream_replays_everything_then_204_after_the_end(
    api: httpx.Client, slow_workflow: str
) -> None:
    """A finished run's stream gives the whole history at once; past its end, 204."""
    run_id, url = _start(api, slow_workflow)
    everything = _read_some(api, url, 0, 10_000)

    again = _read_some(api, url, 0, 10_000)
    past_end = api.get(url, headers={"Last-Event-ID": str(everything[-1]["seq"])})

    assert again == everything
    assert past_end.status_code == 204


def test_stream_token_must_be_this_runs_and_unexpired(
    api: httpx.Client, slow_workflow: str, stack: LocalStack
) -> None:
    """Missing, foreign, forged or expired tokens are refused; the run's own is accepted."""
    from stepstream import tokens

    run_id, url = _start(api, slow_workflow)
    other_id, other_url = _start(api, slow_workflow)
    base = url.split("?")[0]
    expired = tokens.issue(stack.stream_secret, run_id, ttl=-1)

    assert api.get(base).status_code == 401
    assert api.get(base, params={"token": httpx.URL(other_url).params["token"]}).status_code == 403
    assert api.get(base, params={"token": "99999999999.00ff"}).status_code == 403
    expired_answer = api.get(base, params={"token": expired})
    assert expired_answer.status_code == 403 and "expired" in expired_answer.text
    assert _read_some(api, url, 0, 10_000)[-1]["type"] == "run_completed"


def test_follower_resumes_across_dropped_connections(
    api: httpx.Client, slow_workflow: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's follower, on a stream that ends every response early, shows each event once."""
    monkeypatch.setenv("AWS_LWA_INVOKE_MODE", "buffered")
    monkeypatch.setenv("LONG_POLL_SECONDS", "2")
    run_id, url = _start(api, slow_workflow)
    follower = Follower(api, run_id, url)

    seqs = [event["seq"] for event in follower.events()]

    assert seqs == list(range(1, len(seqs) + 1))
    assert follower.reconnects >= 1


def test_follower_gets_a_fresh_url_when_the_token_is_refused(
    api: httpx.Client, slow_workflow: str
) -> None:
    """With an expired stream URL, the follower asks the API for a new one and goes on."""
    run_id, url = _start(api, slow_workflow)
    stale = url.split("?")[0] + "?token=1.00"

    events = list(Follower(api, run_id, stale).events())

    assert events[-1]["type"] == "run_completed"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_run_command_follows_the_run_and_exits_with_its_outcome(
    api: httpx.Client, tmp_path: Path
) -> None:
    """`stepstream run FILE` registers, queues and watches; exit 0 on success, 1 on failure."""
    good = tmp_path / "good.yaml"
    good.write_text("name: cli_good\nsteps:\n  - id: start\n    type: trigger\n"
                    "  - id: say\n    type: notify\n    message: hi {trigger.body.who}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: cli_bad\nsteps:\n  - id: start\n    type: trigger\n"
                   "  - id: say\n    type: notify\n    message: hi {trigger.body.nobody}\n")
    base = str(api.base_url).rstrip("/")

    ok = subprocess.run([STEPSTREAM, "run", str(good), "--api", base, "--data", '{"who": "x"}'],
                        capture_output=True, text=True, timeout=60, check=False)
    again = subprocess.run([STEPSTREAM, "run", str(good), "--api", base],
                           capture_output=True, text=True, timeout=60, check=False)
    failed = subprocess.run([STEPSTREAM, "run", str(bad), "--api", base],
                            capture_output=True, text=True, timeout=60, check=False)

    assert ok.returncode == 0 and "run completed 2/2" in ok.stdout, ok.stdout + ok.stderr
    assert again.returncode == 1 and "'who' is not in trigger.body" in again.stdout
    assert failed.returncode == 1 and "run failed" in failed.stdout


def test_watch_command_exits_with_the_runs_outcome(api: httpx.Client, slow_workflow: str) -> None:
    """`stepstream watch RUN_ID` prints every step and exits 0 for a completed run."""
    run_id, _url = _start(api, slow_workflow)

    result = subprocess.run(
        [STEPSTREAM, "watch", run_id, "--api", str(api.base_url).rstrip("/")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    missing = subprocess.run(
        [STEPSTREAM, "watch", "no-such-run", "--api", str(api.base_url).rstrip("/")],
        capture_output=True, text=True, timeout=60, check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("step_completed") == SLOW_STEPS + 1
    assert missing.returncode == 1 and "no run" in missing.stderr
