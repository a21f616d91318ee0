"""Fresh-process cost: what a user's script pays to import Jumpstarter, serve a small driver tree,
make one call and exit; with `python -c "import grpc"` and an empty interpreter for reference.

Wall time is the median over several fresh processes; peak RSS is the child's own maximum
resident set (VmHWM, read by the child just before it exits, so Linux only).
`python bench/bench_startup.py [--quick]` prints the figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import MIB, Settings, child_env, median

#: A composite of ten leaf drivers served with `serve()`, one call, exit.
SERVE_TEN = """
from dataclasses import dataclass
from jumpstarter.common.utils import serve
from jumpstarter.driver import Driver, export

@dataclass(kw_only=True)
class Leaf(Driver):
    @export
    async def ping(self) -> str:
        return "pong"

root = Driver(children={f"leaf{i}": Leaf() for i in range(10)})
with serve(root) as client:
    assert client.leaf9.call("ping") == "pong"
"""

PROGRAMS = {"serve10": SERVE_TEN, "import_grpc": "import grpc", "empty": "pass"}


#: Appended to every program: print the process's RSS high-water mark (KiB). Read from /proc
#: because `ru_maxrss` of a child carries over the parent's RSS from before `exec` on Linux.
REPORT_PEAK = """
import sys as _sys
with open("/proc/self/status") as _status:
    _sys.stdout.write(next(l.split()[1] for l in _status if l.startswith("VmHWM:")))
"""


def run_once(code: str) -> tuple[float, int]:
    """Wall seconds and peak RSS bytes of one `python -c code`."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code + REPORT_PEAK], stdin=subprocess.DEVNULL, capture_output=True,
        env=child_env(), check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"startup program failed:\n{done.stderr.decode(errors='replace')}")
    return elapsed, int(done.stdout) * 1024


def measure(settings: Settings) -> dict[str, float]:
    """Median wall ms and peak RSS MiB of each program, runs interleaved to share the noise."""
    walls: dict[str, list[float]] = {name: [] for name in PROGRAMS}
    peaks: dict[str, list[float]] = {name: [] for name in PROGRAMS}
    run_once("import grpc")  # warm the page cache once
    for _ in range(settings.startup_runs):
        for name, code in PROGRAMS.items():
            wall, rss = run_once(code)
            walls[name].append(wall * 1000)
            peaks[name].append(rss / MIB)
    figures = {}
    for name in PROGRAMS:
        figures[f"{name}.wall_ms"] = median(walls[name])
        figures[f"{name}.peak_rss_MiB"] = max(peaks[name])
    return figures


def main() -> None:
    """Print the startup figures as JSON."""
    settings = Settings.quick() if "--quick" in sys.argv else Settings()
    json.dump(measure(settings), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
