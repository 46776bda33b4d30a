"""The local stack in a process of its own, so the benchmark's client never shares its GIL.

Parent side: ``StackProcess`` starts ``python -m bench.stackproc``, reads the one JSON
line the child prints when its stack answers (URLs, table names, pid) and stops it by
closing the child's stdin. Child side: ``main`` runs ``LocalStack`` with streams open
(no token, as ``latency_probe.py`` expects) until its stdin closes; with ``--profile``
it records each function invocation with pyinstrument and writes one text profile
per function when it stops.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# What the child reports of its environment: where the engine's resources are.
ENV_KEYS = ("WORKFLOWS_TABLE", "RUNS_TABLE", "EVENTS_TABLE", "RUN_QUEUE_URL", "REDIS_URL",
            "AWS_ENDPOINT_URL")


class StackProcess:
    """A local stack in a child process, as a context manager.

    Args:
        redis_url: Redis for the live event path; "" runs the stack on DynamoDB alone.
        profile_dir: Where the child writes pyinstrument profiles; None profiles nothing.
    """

    def __init__(self, redis_url: str, profile_dir: Path | None = None) -> None:
        self.command = [sys.executable, "-m", "bench.stackproc", "--redis-url", redis_url]
        if profile_dir is not None:
            self.command += ["--profile", str(profile_dir)]
        self.process: subprocess.Popen[str] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> StackProcess:
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=30)
            raise RuntimeError(f"the stack process exited with {self.process.returncode}")
        self.info = json.loads(line)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def api(self) -> str:
        """The API's base URL (the stream shares it)."""
        return str(self.info["api"])

    @property
    def pid(self) -> int:
        """The child's process id."""
        return int(self.info["pid"])


class _Profiles:
    """pyinstrument sessions of every invocation, combined per function."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sessions: dict[str, Any] = {}
        self.lock = threading.Lock()

    def install(self) -> None:
        """Wrap ``LocalFunction.invoke`` so that each invocation is profiled."""
        from pyinstrument import Profiler

        from stepstream_local.runtime import LocalFunction

        invoke = LocalFunction.invoke
        profiles = self

        def profiled(function: LocalFunction, event: dict[str, Any]) -> Any:
            profiler = Profiler(interval=0.0002, async_mode="disabled")
            profiler.start()
            try:
                return invoke(function, event)
            finally:
                profiles.add(function.logical_id, profiler.stop())

        LocalFunction.invoke = profiled  # type: ignore[method-assign]

    def add(self, name: str, session: Any) -> None:
        from pyinstrument.session import Session

        with self.lock:
            previous = self.sessions.get(name)
            self.sessions[name] = session if previous is None else Session.combine(
                previous, session)

    def write(self) -> None:
        """One text profile per function, ``<logical id>.txt``."""
        from pyinstrument.renderers import ConsoleRenderer

        self.directory.mkdir(parents=True, exist_ok=True)
        renderer = ConsoleRenderer(unicode=True, color=False, show_all=False, time="seconds")
        for name, session in self.sessions.items():
            (self.directory / f"{name}.txt").write_text(renderer.render(session))


def main(argv: list[str] | None = None) -> int:
    """Run a local stack until stdin closes; print its URLs as one JSON line first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args(argv)
    profiles = _Profiles(args.profile) if args.profile else None
    if profiles is not None:
        profiles.install()
    from stepstream_local.stack import LocalStack

    with LocalStack(redis_url=args.redis_url, log_level="WARNING", stream_secret="") as stack:
        assert stack.urls is not None
        info = {"api": stack.urls.api, "aws": stack.urls.aws, "pid": os.getpid(),
                "env": {key: os.environ.get(key, "") for key in ENV_KEYS}}
        print(json.dumps(info), flush=True)
        sys.stdin.read()
    if profiles is not None:
        profiles.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
