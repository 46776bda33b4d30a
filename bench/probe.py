"""``python -m bench.probe``: the shared latency probe, run against a local stack.

The probe (``../shared/tools/latency_probe.py`` beside the repository) is a client
only; the stack here runs with its streams open, since the probe sends no token, and
the workflow it registers is service_health_pipeline pointed at this stack's /health.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from bench.client import health_pipeline
from bench.run import redis_url
from bench.stackproc import StackProcess

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT.parent / "shared" / "tools" / "latency_probe.py"
RESULTS = ROOT / "bench" / "results"


def main() -> int:
    """Run the probe with its defaults and a small jitter; its raw samples go to results/."""
    if not PROBE.exists():
        print(f"no latency probe at {PROBE}", file=sys.stderr)
        return 1
    RESULTS.mkdir(parents=True, exist_ok=True)
    with redis_url() as redis, StackProcess(redis) as stack, tempfile.TemporaryDirectory() as tmp:
        workflow = Path(tmp) / "service_health_pipeline.yaml"
        workflow.write_text(health_pipeline(stack.api))
        command = [sys.executable, str(PROBE), "--base-url", stack.api, "--stream-url",
                   stack.api, "--workflow", str(workflow), "--jitter-ms", "100",
                   "--json-out", str(RESULTS / "probe.json")]
        return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
