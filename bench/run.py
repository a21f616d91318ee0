"""Run every benchmark, print the table (ours, floor, ratio, target) and write bench/out/latest.json.

    python bench/run.py            # everything: 3 rounds of the core figures (~2 minutes), lease, scale
    python bench/run.py --quick    # 1 short round, ~20 seconds, and a short scale run
    python bench/run.py scale      # only the controller at scale (bench_scale.py, ~2 minutes)
    python bench/run.py core       # only the core figures
    python bench/run.py lease      # only lease request -> Ready from a client (bench_lease.py, ~10 s)

Each round measures the bare-grpcio floor and ours against two child-process servers started once
for the run (figures with a ratio target alternate between floor and ours in small blocks); every
figure is the median over rounds and ratios are taken between those medians, so the floor always
comes from the same run (and the same noise) as our figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import baseline, bench_calls, bench_lease, bench_scale, bench_startup, bench_streams, targets
from bench.harness import (
    Settings,
    child_server,
    event_loop,
    interleaved_latency,
    interleaved_rate,
    interleaved_runs,
)

OUT = Path(__file__).resolve().parent / "out"
#: The parts `run.py` can run (all by default).
PARTS = ("core", "lease", "scale")


def _prefixed(prefix: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in figures.items()}


def unary_pairs(bare_path: str, ours_path: str, settings: Settings, portal: Any) -> dict[str, float]:
    """Unary p50/p99 and 16-thread calls/s of the floor and ours, sampled in alternating blocks
    so that the ratios compare calls made under the same machine load."""
    with baseline.bare_calls(bare_path, portal) as bare, bench_calls.local_client(portal) as local:
        with bench_calls.remote_client(ours_path, portal) as remote:
            calls = _prefixed("bare", bare) | _prefixed("calls", bench_calls.unary_calls(local, remote))
            found = interleaved_latency(calls, settings)
            pair = {key: calls[key] for key in ("bare.unary", "calls.remote.echo_async")}
            rates = interleaved_rate(pair, 16, 2 * settings.seconds)
    figures = {f"{name}.{key}": value for name, stats in found.items() for key, value in stats.items()}
    figures["bare.unary.threads16_calls_per_s"] = rates["bare.unary"]
    figures["calls.remote.threads16_calls_per_s"] = rates["calls.remote.echo_async"]
    return figures


def stream_pairs(bare_path: str, ours_path: str, settings: Settings, portal: Any) -> dict[str, float]:
    """The byte-stream figures compared with a floor (64 KiB one way and echo), floor and ours
    alternating in slices."""
    with bench_calls.remote_client(ours_path, portal) as client:
        runs = _prefixed("bare.stream", baseline.paired_streams(bare_path, portal))
        runs.update(_prefixed("streams", bench_streams.paired_streams(client)))
        return interleaved_runs(runs, settings.seconds)


def run_round(bare_path: str, ours_path: str, settings: Settings, portal: Any) -> dict[str, float]:
    """One pass over the floor and our call and stream figures."""
    figures = unary_pairs(bare_path, ours_path, settings, portal)
    figures.update(stream_pairs(bare_path, ours_path, settings, portal))
    figures.update(_prefixed("bare", baseline.measure(bare_path, settings, portal, paired=False)))
    figures.update(_prefixed("calls", bench_calls.measure(ours_path, settings, portal, paired=False)))
    figures.update(_prefixed("streams", bench_streams.measure(ours_path, settings, portal, paired=False)))
    return figures


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import grpc

    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        model = models[0] if models else ""
    except OSError:
        pass
    return {
        "source": source_revision(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "loadavg_at_start": os.getloadavg(),
    }


def source_revision() -> str:
    """The commit measured, with `+dirty` when src/ has uncommitted changes (read-only git)."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+dirty" if git("--no-optional-locks", "status", "--porcelain", "--", "src") else "")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes) since boot."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def own_cpu_seconds() -> float:
    """CPU seconds used by this process and its reaped children (the servers, the startup runs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _verdict(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "NOT MET")


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The results as an aligned plain-text table."""
    header = ("figure", "ours", "floor", "unit", "ratio", "target", "")
    body = [
        (r["label"], _number(r["ours"]), _number(r["floor"]), r["unit"], _number(r["ratio"]), r["target"],
         _verdict(r["met"]))
        for r in rows
    ]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    right = {1, 2, 4}
    out = []
    for line in (header, *body):
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in pairs]
        out.append("  ".join(cells).rstrip())
    return out


def markdown(rows: list[dict[str, Any]], figures: dict[str, float]) -> str:
    """The results as Markdown tables (for bench/RESULTS.md)."""
    lines = ["| figure | ours | floor | unit | ratio | target | |", "|---|--:|--:|---|--:|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {_number(r['ours'])} | {_number(r['floor'])} | {r['unit']} | "
            f"{_number(r['ratio'])} | {r['target']} | {_verdict(r['met'])} |"
        )
    lines += ["", "| floor-only figure | value | unit |", "|---|--:|---|"]
    for key, unit in targets.FLOOR_FIGURES:
        lines.append(f"| {key} | {_number(figures.get(key))} | {unit} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run, print, write bench/out/latest.json (and latest.md); exit status 0 even if targets
    are missed: this is a measurement, not a test."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short round (~20 s)")
    parser.add_argument("--rounds", type=int, help="rounds of the call/stream figures (default 3, quick 1)")
    parser.add_argument("--out", type=Path, default=OUT / "latest.json", help="where to write the JSON")
    parser.add_argument("parts", nargs="*", metavar="PART", help=f"what to run: {', '.join(PARTS)} (default: all)")
    args = parser.parse_args(argv)
    parts = set(args.parts) or set(PARTS)
    if parts - set(PARTS):
        parser.error(f"unknown part(s) {', '.join(sorted(parts - set(PARTS)))}: choose from {', '.join(PARTS)}")
    settings = Settings.quick() if args.quick else Settings()
    rounds = (args.rounds or (1 if args.quick else 3)) if "core" in parts else 0

    began = time.perf_counter()
    info = machine()
    busy_before, own_before = busy_cpu_seconds(), own_cpu_seconds()
    samples: list[dict[str, float]] = []
    figures: dict[str, float] = {}
    rows: list[dict[str, Any]] = []
    if "core" in parts:
        with child_server("bare") as bare_path, child_server("jumpstarter") as ours_path, event_loop() as portal:
            for index in range(rounds):
                samples.append(run_round(bare_path, ours_path, settings, portal))
                print(f"round {index + 1}/{rounds} done at {time.perf_counter() - began:.0f} s", file=sys.stderr)
        figures = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
        figures.update(_prefixed("startup", bench_startup.measure(settings)))
        figures = targets.add_derived(figures)
        rows = targets.evaluate(figures)
    scale = None
    if "lease" in parts:
        figures.update(bench_lease.measure(quick=args.quick))
        rows += [row.evaluate(figures) for row in bench_lease.ROWS]
    if "scale" in parts:
        scale = bench_scale.measure(quick=args.quick)
        figures.update(bench_scale.figures(scale))
        rows += [row.evaluate(figures) for row in bench_scale.ROWS]
    elapsed = time.perf_counter() - began
    # CPU the rest of the machine used meanwhile: the noise the ratios are meant to absorb
    foreign = max(0.0, (busy_cpu_seconds() - busy_before) - (own_cpu_seconds() - own_before))
    info["loadavg_at_end"] = os.getloadavg()
    info["other_processes_cpu_share"] = foreign / (elapsed * (os.cpu_count() or 1))

    print("\n".join(table_lines(rows)))
    print()
    for key, unit in targets.FLOOR_FIGURES if "core" in parts else ():
        print(f"{key:<42} {_number(figures.get(key)):>10} {unit}")
    missed = [r["label"] for r in rows if r["met"] is False]
    print(f"\n{len(missed)} target(s) not met; {rounds} round(s) in {elapsed:.0f} s; source {info['source']}")
    share = info["other_processes_cpu_share"]
    print(f"other processes used {share:.0%} of the machine's CPU during the run", end="")
    print(" (absolute figures are unreliable; ratios less so)" if share > 0.1 else "")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info,
        "mode": "quick" if args.quick else "full",
        "rounds": rounds,
        "settings": {field: getattr(settings, field) for field in settings.__dataclass_fields__},
        "elapsed_s": elapsed,
        "rows": rows,
        "figures": figures,
        "samples": samples,
        "scale": scale,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(rows, figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
