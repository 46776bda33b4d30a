"""The SSE stream on the local stack: resuming, modes, headers, clients, redrives, cancels."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepstream.store import Store
from stepstream_local.stack import LocalStack
from stepstream_local.watch import Follower
from tests.integration.conftest import register, sse_events, stream_url
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
        assert "\r" not in response.text
        ids = [int(line[3:]) for line in response.text.split("\n") if line.startswith("id:")]
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
    """While a step takes its time, the stream sends `:` comment lines to keep proxies open.

    Every line, heartbeats included, ends in a bare LF, so line-based scripts see no CR.
    """
    monkeypatch.setenv("STREAM_HEARTBEAT_SECONDS", "0.05")
    run_id, url = _start(api, slow_workflow)

    with api.stream("GET", url) as response:
        raw = response.read().decode()

    assert "\r" not in raw
    lines = raw.split("\n")
    assert any(line.startswith(":") for line in lines)
    assert "event: run_completed" in lines and f"id: {len(_read_some(api, url, 0, 10_000))}" in lines


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


@pytest.mark.parametrize("after", ["abc", "-1", "2.5"])
def test_after_that_is_no_seq_is_400_not_a_replay_from_the_start(
    api: httpx.Client, slow_workflow: str, after: str
) -> None:
    """A typo in ?after= is told, rather than answered with the whole stream."""
    _run_id, url = _start(api, slow_workflow)

    answer = api.get(f"{url}&after={after}")

    assert answer.status_code == 400
    assert "after must be the seq of an event" in answer.json()["detail"]


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


def test_run_command_runs_an_edited_file_only_with_replace(
    api: httpx.Client, tmp_path: Path
) -> None:
    """A file edited after it was registered: run warns and runs the registered text;
    --replace registers the file's text and runs that."""
    name = f"cli_edit_{uuid.uuid4().hex[:8]}"
    flow = tmp_path / "flow.yaml"
    text = "name: {name}\nsteps:\n  - id: start\n    type: trigger\n  - id: say\n" \
           "    type: notify\n    message: {message}\n"
    base = str(api.base_url).rstrip("/")

    def run(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([STEPSTREAM, "run", str(flow), "--api", base, *options],
                              capture_output=True, text=True, timeout=60, check=False)

    flow.write_text(text.format(name=name, message="version one"))
    first = run()
    flow.write_text(text.format(name=name, message="version two"))
    kept, replaced = run(), run("--replace")

    def said(result: subprocess.CompletedProcess[str]) -> str:
        run_id = result.stdout.split()[1]  # "run <id> queued"
        steps = api.get(f"/api/v1/runs/{run_id}").json()["steps"]
        return next(step for step in steps if step["step_id"] == "say")["output_data"]["message"]

    assert first.returncode == kept.returncode == replaced.returncode == 0, replaced.stderr
    assert said(kept) == "version one" and "is not this file's text" in kept.stderr
    assert said(replaced) == "version two" and "replaced the workflow" in replaced.stderr
    names = [w["name"] for w in api.get("/api/v1/workflows").json()]
    assert names.count(name) == 1


def test_commands_say_in_one_line_when_no_api_answers(tmp_path: Path) -> None:
    """No stack at --api: one line saying so and exit 2 (outcome unknown), no traceback."""
    flow = tmp_path / "flow.yaml"
    flow.write_text("name: nowhere\nsteps:\n  - id: start\n    type: trigger\n")
    nowhere = "http://127.0.0.1:9"

    for command in (["run", str(flow)], ["watch", "some-run"]):
        result = subprocess.run([STEPSTREAM, *command, "--api", nowhere], capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"Error: cannot reach the Stepstream API at {nowhere}")
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


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


# -- Redriven and cancelled runs, their events written to the table as the engine would --

FETCH = {"step_id": "fetch", "node_type": "http", "iteration": 1}
REDRIVEN = (
    ("run_started", {"status": "running"}),
    ("step_started", {**FETCH, "status": "running"}),
    ("step_failed", {**FETCH, "status": "failed", "error": "HTTP 503", "duration_ms": 5}),
    ("run_failed", {"status": "failed", "error": "Step 'fetch' failed"}),
    ("run_resumed", {"status": "running", "reason": "redrive", "attempt": 2}),
    ("step_started", {**FETCH, "status": "running"}),
    ("step_retrying", {**FETCH, "status": "retrying", "attempt": 1, "max_attempts": 3,
                       "delay_seconds": 2.0, "error": "HTTP 503", "error_kind": "http_status"}),
    ("step_completed", {**FETCH, "status": "completed", "duration_ms": 7}),
    ("step_skipped", {"step_id": "alert", "node_type": "notify", "status": "skipped"}),
    ("run_completed", {"status": "completed", "error": None}),
)
FIRST_END = 4  # the run_failed before the redrive
CANCELLED = (
    *REDRIVEN[:2],
    REDRIVEN[6],
    ("run_cancelled", {"status": "cancelled", "error": "cancelled by the user"}),
)
MODES = ["response_stream", "buffered"]


def _rows(run_id: str, kinds: tuple[tuple[str, dict], ...], first: int = 1) -> list:
    """``(seq, type, data)`` rows of events ``first``... of ``kinds``, as the engine stores them."""
    rows = []
    for seq, (kind, fields) in enumerate(kinds[first - 1 :], start=first):
        done = 2 if kind in ("step_completed", "step_skipped", "run_completed") else 1
        event = {"type": kind, "run_id": run_id, "seq": seq,
                 "timestamp": "2026-01-01T00:00:00+00:00", "steps_completed": done,
                 "total_steps": 2, "progress": 50 * done, **fields}
        rows.append((seq, kind, json.dumps(event)))
    return rows


def _stored_run(store: Store, status: str, kinds: tuple, stored: int | None = None,
                **record: Any) -> str:
    """A run in ``status`` whose first ``stored`` events (all by default) are in the table."""
    run_id = str(uuid.uuid4())
    store.put_run({"run_id": run_id, "workflow_id": "wf", "status": status,
                   "trigger_data": {}, "step_order": [], "total_steps": 2,
                   "created_at": "2026-01-01T00:00:00+00:00", **record})
    store.put_events(run_id, _rows(run_id, kinds[:stored]))
    return run_id


def _later(seconds: float, *writes: Callable[[], None]) -> threading.Timer:
    """Run ``writes`` in order after ``seconds`` (a redrive landing while a client waits)."""
    timer = threading.Timer(seconds, lambda: [write() for write in writes])
    timer.start()
    return timer


@pytest.fixture
def stream_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The stream's mode for this test (the stream reads it on each request)."""
    monkeypatch.setenv("AWS_LWA_INVOKE_MODE", request.param)
    monkeypatch.setenv("LONG_POLL_SECONDS", "5")
    return request.param


@pytest.mark.parametrize("stream_mode", MODES, indirect=True)
def test_redriven_run_replays_past_its_run_failed_to_the_end(
    api: httpx.Client, store: Store, stream_mode: str
) -> None:
    """From 0, one response carries the run through run_failed, the redrive and run_completed."""
    run_id = _stored_run(store, "completed", REDRIVEN)

    events = sse_events(api, run_id)

    assert [e["type"] for e in events] == [kind for kind, _fields in REDRIVEN]
    assert [e["seq"] for e in events] == list(range(1, len(REDRIVEN) + 1))


@pytest.mark.parametrize("stream_mode", MODES, indirect=True)
def test_redriven_run_resumed_at_its_run_failed_gets_the_rest_then_204(
    api: httpx.Client, store: Store, stream_mode: str
) -> None:
    """A client holding the first run_failed is not done: it gets the redrive, then a 204."""
    run_id = _stored_run(store, "completed", REDRIVEN)
    url = stream_url(api, run_id)

    rest = sse_events(api, run_id, headers={"Last-Event-ID": str(FIRST_END)})
    past_end = api.get(url, headers={"Last-Event-ID": str(len(REDRIVEN))})

    assert [e["seq"] for e in rest] == list(range(FIRST_END + 1, len(REDRIVEN) + 1))
    assert rest[0]["reason"] == "redrive" and rest[-1]["type"] == "run_completed"
    assert past_end.status_code == 204


@pytest.mark.parametrize("stream_mode", MODES, indirect=True)
def test_failed_run_redriven_while_its_client_waits_streams_the_redrive(
    api: httpx.Client, store: Store, stream_mode: str
) -> None:
    """A client at the run_failed of a run just redriven waits for the redrive's events.

    Given a failed run just redriven (queued, nothing new stored), when the client
    asks after its run_failed, then it gets the redrive's events once they are written.
    """
    run_id = _stored_run(store, "queued", REDRIVEN, stored=FIRST_END)
    timer = _later(
        0.3,
        lambda: store.finish_run(run_id, "completed", "2026-01-01T00:00:01+00:00", None),
        lambda: store.put_events(run_id, _rows(run_id, REDRIVEN, FIRST_END + 1)),
    )
    try:
        rest = sse_events(api, run_id, headers={"Last-Event-ID": str(FIRST_END)})
    finally:
        timer.join()

    assert [e["seq"] for e in rest] == list(range(FIRST_END + 1, len(REDRIVEN) + 1))


@pytest.mark.parametrize("stream_mode", MODES, indirect=True)
def test_finished_redrive_whose_last_batch_is_on_its_way_is_not_204(
    api: httpx.Client, store: Store, stream_mode: str
) -> None:
    """A client at the first run_failed is not told to stop while the record is past it.

    Given a redriven run whose record is final (last_seq at its run_completed) while
    its new events are not stored yet, a client at the first run_failed gets them.
    """
    run_id = _stored_run(store, "completed", REDRIVEN, stored=FIRST_END,
                         last_seq=len(REDRIVEN))
    timer = _later(0.3, lambda: store.put_events(run_id, _rows(run_id, REDRIVEN, FIRST_END + 1)))
    try:
        rest = sse_events(api, run_id, headers={"Last-Event-ID": str(FIRST_END)})
    finally:
        timer.join()

    assert [e["seq"] for e in rest] == list(range(FIRST_END + 1, len(REDRIVEN) + 1))


@pytest.mark.parametrize("stream_mode", MODES, indirect=True)
def test_failed_run_that_nothing_follows_is_204_at_its_run_failed(
    api: httpx.Client, store: Store, stream_mode: str
) -> None:
    """Without a redrive, the run_failed is the end, as before."""
    run_id = _stored_run(store, "failed", REDRIVEN, stored=FIRST_END)
    url = stream_url(api, run_id)

    events = sse_events(api, run_id)

    assert events[-1]["type"] == "run_failed" and len(events) == FIRST_END
    assert api.get(url, headers={"Last-Event-ID": str(FIRST_END)}).status_code == 204


@pytest.mark.parametrize("stream_mode", MODES, indirect=True)
def test_cancelled_run_streams_to_run_cancelled_then_204(
    api: httpx.Client, store: Store, stream_mode: str
) -> None:
    """run_cancelled is terminal and a cancelled run is finished."""
    run_id = _stored_run(store, "cancelled", CANCELLED)
    url = stream_url(api, run_id)

    events = sse_events(api, run_id)

    assert [e["type"] for e in events] == [kind for kind, _fields in CANCELLED]
    assert api.get(url, headers={"Last-Event-ID": str(len(CANCELLED))}).status_code == 204
    assert api.get(url, headers={"Last-Event-ID": "1"}).status_code == 200


@pytest.mark.parametrize("stream_mode", MODES, indirect=True)
def test_follower_of_a_redriven_run_goes_on_to_its_run_completed(
    api: httpx.Client, store: Store, stream_mode: str
) -> None:
    """The CLI's follower does not stop at the run_failed that a redrive follows."""
    run_id = _stored_run(store, "completed", REDRIVEN)
    follower = Follower(api, run_id, stream_url(api, run_id))

    seen = list(follower.events())

    assert [e["seq"] for e in seen] == list(range(1, len(REDRIVEN) + 1))
    assert seen[-1]["type"] == "run_completed"


def test_watch_command_shows_a_redrive_to_its_end_and_exits_3_for_a_cancelled_run(
    api: httpx.Client, store: Store
) -> None:
    """`stepstream watch` prints retries and resumptions; cancelled exits 3, not 1."""
    base = str(api.base_url).rstrip("/")
    redriven = _stored_run(store, "completed", REDRIVEN)
    cancelled = _stored_run(store, "cancelled", CANCELLED)

    done = subprocess.run([STEPSTREAM, "watch", redriven, "--api", base],
                          capture_output=True, text=True, timeout=60, check=False)
    stopped = subprocess.run([STEPSTREAM, "watch", cancelled, "--api", base],
                             capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("run_failed") for line in lines)
    assert any("redriven after failing (attempt 2)" in line for line in lines)
    assert ("step_retrying   ↻ fetch attempt 1/3 failed (http_status: HTTP 503); "
            "retrying in 2.0s") in lines
    assert lines[-1] == "run completed 2/2"
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert "cancelled: cancelled by the user" in stopped.stdout
    assert stopped.stdout.splitlines()[-1] == "run cancelled 1/2"
