"""Figure 5: cold start, a fresh interpreter importing each function's handler module.

As Lambda would; the stream function's includes uvicorn, which serves it there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.stats import Summary, summarize

ROOT = Path(__file__).resolve().parents[1]
# Function -> (its code directory, what its runtime imports).
HANDLERS = {
    "api": ("functions/api", "api_handler"),
    "executor": ("functions/executor", "executor_handler"),
    "stream": ("functions/stream", "uvicorn, stream_app"),
}


def _code(directory: str, modules: str) -> str:
    return f"import sys; sys.path.insert(0, {str(ROOT / directory)!r}); import {modules}"


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(AWS_DEFAULT_REGION="us-east-1", POWERTOOLS_LOG_LEVEL="WARNING",
               STREAM_ASGI_APP="stream_app:app")
    return env


def _wall_ms(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_environment())
    return (time.perf_counter() - started) * 1000


def import_times(code: str) -> dict[str, tuple[int, int]]:
    """``python -X importtime``: each module's (self, cumulative) µs, by name."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True,
                            env=_environment(), capture_output=True, text=True)
    times: dict[str, tuple[int, int]] = {}
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:"):].split("|")
        times[name.strip()] = (int(own), int(cumulative))
    return times


def _import_ms(code: str, modules: str) -> float:
    times = import_times(code)
    return sum(times[name.strip()][1] for name in modules.split(",")) / 1000


def heaviest(function: str, count: int = 8) -> list[tuple[str, float]]:
    """The top-level imports that cost ``function``'s cold start most (ms, cumulative)."""
    directory, modules = HANDLERS[function]
    times = import_times(_code(directory, modules))
    top = [(name, cum / 1000) for name, (_own, cum) in times.items() if "." not in name]
    return sorted(top, key=lambda item: -item[1])[:count]


def measure(repeats: int = 5) -> list[Summary]:
    """Per function: the handler import (``-X importtime``) and the whole fresh process."""
    rows: list[Summary] = []
    baseline = summarize("", "ms", [_wall_ms("pass") for _ in range(repeats)]).median
    for function, (directory, modules) in HANDLERS.items():
        code = _code(directory, modules)
        imports = [_import_ms(code, modules) for _ in range(repeats)]
        walls = [_wall_ms(code) for _ in range(repeats)]
        rows.append(summarize(f"cold start {function}: import", "ms", imports))
        rows.append(summarize(f"  cold start {function}: process", "ms", walls))
    rows.append(summarize("  (bare interpreter, for scale)", "ms", [baseline]))
    return rows
