"""Direct mode against local mode, measured in the same run on one exporter process.

One `jmp run` serves `BenchDriver` on a unix socket *and* on TCP + TLS (self-signed, passphrase),
so the two paths differ only by transport. Figures: unary p50 (TLS / unix, target <= 1.3x), byte
stream 64 KiB one way (TLS / unix, target >= 0.7x), and how long `jmp run` takes from start to a
listening, TLS-serving port (target <= 300 ms; upstream ~800 ms).
`python bench/bench_direct.py [--quick]` prints JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import Settings, child_env, interleaved_latency, median

CONFIG = """apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
export:
  bench:
    type: bench.drivers.BenchDriver
"""
CHUNK = b"x" * 65536


def start_exporter(tmp: Path) -> tuple[subprocess.Popen[str], str, str, float]:
    """Start `jmp run` on a unix socket and TCP+TLS; returns (process, address, fingerprint, seconds
    from spawn to the listening line)."""
    config = tmp / "bench.yaml"
    config.write_text(CONFIG)
    socket_path = str(tmp / "exporter.sock")
    jmp = str(Path(sys.executable).parent / "jmp")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [jmp, "run", "--exporter-config", str(config), "--unix-socket", socket_path,
         "--tls-grpc-listener", "127.0.0.1:0", "--passphrase", "bench"],
        stderr=subprocess.PIPE, text=True, env=child_env(),
    )  # fmt: skip
    address = fingerprint = ""
    ready = 0.0
    assert proc.stderr is not None
    for line in proc.stderr:
        if m := re.search(r"listening on (\S+)", line):
            address = m.group(1)
            ready = time.perf_counter() - start
        if m := re.search(r"fingerprint (SHA256:\S+)", line):
            fingerprint = m.group(1)
        if "authentication:" in line:
            break
    return proc, address, fingerprint, ready


def ready_times(runs: int) -> list[float]:
    """Seconds from spawning `jmp run` to its TLS listener being up, over fresh processes."""
    found = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            proc, _, _, ready = start_exporter(Path(tmp))
            proc.terminate()
            proc.wait()
            found.append(ready)
    return found


def stream_rate(client: object, seconds: float) -> float:
    """MB/s of 64 KiB sends into the driver's sink stream."""
    sent = 0
    with client.stream("sink") as stream:  # type: ignore[attr-defined]
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            for _ in range(64):
                stream.send(CHUNK)
            sent += 64 * len(CHUNK)
        stream.send_eof()
        stream.receive()  # the sink reports its total after end-of-input
        elapsed = time.perf_counter() - start
    return sent / elapsed / 1e6


def main() -> None:
    """Measure and print JSON."""
    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path, client_from_target
    from jumpstarter.client.direct import DirectTarget

    quick = "--quick" in sys.argv
    settings = Settings.quick() if quick else Settings()
    with tempfile.TemporaryDirectory() as tmp, start_blocking_portal("asyncio") as portal:
        import os

        os.environ["XDG_CONFIG_HOME"] = tmp  # pin the fingerprint in a throwaway place
        proc, address, fingerprint, _ = start_exporter(Path(tmp))
        try:
            target = DirectTarget(address=address, passphrase="bench", accept_fingerprint=fingerprint)
            with (
                client_from_path(str(Path(tmp) / "exporter.sock"), portal, unsafe=True) as local,
                client_from_target(target, portal, unsafe=True, interactive=False) as remote,
            ):
                latency = interleaved_latency(
                    {
                        "unix": lambda: local.bench.call("echo_async", 1),
                        "tls": lambda: remote.bench.call("echo_async", 1),
                    },
                    settings,
                )
                rounds = 3
                unix_rates, tls_rates = [], []
                for _ in range(rounds):
                    unix_rates.append(stream_rate(local.bench, settings.seconds))
                    tls_rates.append(stream_rate(remote.bench, settings.seconds))
        finally:
            proc.terminate()
            proc.wait()
    ready = ready_times(settings.startup_runs)
    result = {
        "unary_p50_us": {k: v["p50_us"] for k, v in latency.items()},
        "unary_ratio_tls_over_unix": latency["tls"]["p50_us"] / latency["unix"]["p50_us"],
        "stream_64k_MBps": {"unix": median(unix_rates), "tls": median(tls_rates)},
        "stream_ratio_tls_over_unix": median(tls_rates) / median(unix_rates),
        "ready_ms_median": 1000 * median(ready),
        "ready_ms_all": [round(1000 * r) for r in ready],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
