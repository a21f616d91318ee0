"""Command-line start-up: `jmp --help`, and `j power on` inside `jmp shell` (fast path through the
shell's command socket) and outside it (slow path: its own gRPC connection).

Targets (issue 3): `j power on` <= 150 ms wall, `jmp --help` <= 200 ms (upstream ~560-790 ms and
~1,200 ms). The floor is an empty `python -c pass`. `python bench/bench_cli.py` prints JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import child_env, median

BIN = Path(sys.executable).parent
CONFIG = """apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
export:
  power:
    type: jumpstarter_driver_power.driver.MockPower
"""
#: Runs inside `jmp shell`: times `j power on` with and without the command socket.
INNER = """
import json, os, subprocess, sys, time
def timed(env, n=10):
    out = []
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(["j", "power", "on"], env=env, check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return sorted(out)[len(out) // 2]
fast = timed(dict(os.environ))
slow_env = {k: v for k, v in os.environ.items() if k != "JMP_J_SOCKET"}
slow = timed(slow_env, 5)
print(json.dumps({"fast": fast, "slow": slow}))
"""


def wall(argv: list[str], runs: int = 7) -> float:
    """Median wall seconds of a command."""
    found = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=child_env())
        found.append(time.perf_counter() - start)
    return median(found)


def main() -> None:
    """Measure and print JSON."""
    empty = wall([sys.executable, "-c", "pass"])
    helps = wall([str(BIN / "jmp"), "--help"])
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "power.yaml"
        config.write_text(CONFIG)
        done = subprocess.run(
            [str(BIN / "jmp"), "shell", "--exporter-config", str(config), "--", sys.executable, "-c", INNER],
            check=True, capture_output=True, text=True, env=child_env(),
        )  # fmt: skip
        inside = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({
        "python_empty_ms": 1000 * empty,
        "jmp_help_ms": 1000 * helps,
        "j_power_on_in_shell_ms": 1000 * inside["fast"],
        "j_power_on_own_connection_ms": 1000 * inside["slow"],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
