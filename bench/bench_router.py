"""Through the router against direct mode, measured in the same run.

A controller (`jmp controller run`, its built-in router) and two `jmp run` processes serving
`BenchDriver`: one under the controller (reached through the router: client -> unix socket ->
this process's tunnel -> router -> exporter's tunnel -> its TLS session socket), one in
direct mode (TCP + TLS straight to the exporter). Figures: unary p50 (router / direct, target
<= 2x), byte stream 64 KiB one way (router / direct, target >= 0.5x), 100 concurrent byte streams,
each on its own routed connection (own Dial, own router stream), pushing for a few seconds at once
(every stream must progress: no starvation; the slowest against the median says how fair), and how
long a new routed connection takes to answer its first call (Dial + pairing + GetReport).
Routed connections are end-to-end TLS sessions spliced at the router's data port (as `jmp shell`
makes them); `--stream` turns the data port off, so they travel over `RouterService.Stream` (as
with an upstream router). `python bench/bench_router.py [--quick] [--stream]` prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_direct import CHUNK, start_exporter, stream_rate
from bench.harness import Settings, child_env, interleaved_latency, median
from jumpstarter.streams.tunnel import TUNNELLED_OPTIONS

JMP = str(Path(sys.executable).parent / "jmp")
CONFIG = """apiVersion: jumpstarter.dev/v1alpha1
kind: ExporterConfig
export:
  bench:
    type: bench.drivers.BenchDriver
"""
CONCURRENT = 100


def _wait_for_line(proc: subprocess.Popen[str], pattern: str, seconds: float = 30) -> re.Match[str]:
    assert proc.stderr is not None
    deadline = time.monotonic() + seconds
    for line in proc.stderr:
        if match := re.search(pattern, line):
            return match
        if time.monotonic() > deadline:
            break
    raise RuntimeError(f"{proc.args[:3]} never printed {pattern!r}")


@contextmanager
def distributed(tmp: Path, *controller_options: str) -> Iterator[tuple[Path, int]]:
    """A controller (with `controller_options`) and a controlled exporter; yields the client config
    path and the controller's pid."""
    env = child_env() | {"XDG_CONFIG_HOME": str(tmp / "xdg"), "JMP_SYSTEM_CONFIG_DIR": str(tmp / "etc")}
    procs: list[subprocess.Popen[str]] = []
    try:
        controller = subprocess.Popen(
            [JMP, "controller", "run", "--address", "127.0.0.1:0", "--data-dir", str(tmp / "data"),
             *controller_options],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
        )  # fmt: skip
        procs.append(controller)
        _wait_for_line(controller, r"admin credential")
        env["JMP_ADMIN_CREDENTIAL"] = str(tmp / "data" / "admin.yaml")
        exporter_config, client_config = tmp / "routed.yaml", tmp / "client.yaml"
        exporter_config.write_text(CONFIG)
        for args in (["exporter", "bench", "-l", "bench=1", "--out", str(exporter_config)],
                     ["client", "bencher", "--unsafe", "--out", str(client_config)]):
            subprocess.run([JMP, "admin", "create", *args], env=env, check=True, capture_output=True)
        exporter = subprocess.Popen([JMP, "run", "--exporter-config", str(exporter_config)],
                                    stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        procs.append(exporter)
        _wait_for_line(exporter, r"registered with controller")
        yield client_config, controller.pid
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(20)


async def concurrent_streams(socket_path: str, count: int, seconds: float) -> list[float]:
    """MB/s of each of `count` byte streams pushing at once, each on its own routed connection."""
    from jumpstarter.client.client import client_from_path_async

    separate = (("grpc.use_local_subchannel_pool", 1), *TUNNELLED_OPTIONS)  # one connection (one Dial) each
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                client_from_path_async(socket_path, unsafe=True, channel_options=separate)
            )
            for _ in range(count)
        ]
        start = asyncio.Event()

        async def push(client: Any) -> float:
            sent = 0
            async with client.bench.stream_async("sink") as stream:
                await start.wait()
                began = time.perf_counter()
                deadline = began + seconds
                while time.perf_counter() < deadline:
                    await stream.send(CHUNK)
                    sent += len(CHUNK)
                await stream.send_eof()
                total = int(await stream.receive())
                assert total == sent, (total, sent)
                return sent / (time.perf_counter() - began) / 1e6

        tasks = [asyncio.ensure_future(push(client)) for client in clients]
        await asyncio.sleep(0.5)  # every stream open before the clock starts
        start.set()
        return list(await asyncio.gather(*tasks))


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Samples the resident memory of process `pid` while the block runs; yields [peak bytes]."""
    import threading

    import psutil

    process = psutil.Process(pid)
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def connect_times(socket_path: str, portal: Any, runs: int) -> list[float]:
    """Seconds from opening a new routed connection to its GetReport answer."""
    from jumpstarter.client.client import client_from_path

    separate = (("grpc.use_local_subchannel_pool", 1), *TUNNELLED_OPTIONS)
    found = []
    for _ in range(runs):
        began = time.perf_counter()
        with client_from_path(socket_path, portal, unsafe=True, channel_options=separate):
            found.append(time.perf_counter() - began)
    return found


def main() -> None:
    """Measure and print JSON."""
    import os

    from anyio.from_thread import start_blocking_portal

    from jumpstarter.client.client import client_from_path, client_from_target
    from jumpstarter.client.direct import DirectTarget
    from jumpstarter.client.lease import ControllerSession, LeaseTunnel, serve_lease, wait_ready
    from jumpstarter.config.client import ClientConfig

    quick = "--quick" in sys.argv
    settings = Settings.quick() if quick else Settings()
    from jumpstarter.streams.loops import anyio_options

    # the client side's loop is the one `jmp shell --lease` runs its tunnel on
    with tempfile.TemporaryDirectory() as tmp_name, start_blocking_portal("asyncio", anyio_options()) as portal:
        tmp = Path(tmp_name)
        os.environ["XDG_CONFIG_HOME"] = str(tmp / "pins")  # pin the direct exporter's fingerprint here
        (tmp / "direct").mkdir()
        direct_proc, address, fingerprint, _ = start_exporter(tmp / "direct")
        try:
            # --stream: without the data port, so routed connections take RouterService.Stream
            options = ("--data-address", "off") if "--stream" in sys.argv else ()
            with distributed(tmp, *options) as (client_config, controller_pid):
                config = ClientConfig.from_file(client_config)
                session = portal.call(ControllerSession, config)
                lease = portal.call(session.create_lease, "bench=1", 3600.0)
                name = lease.name.rsplit("/", 1)[-1]
                portal.call(wait_ready, session, name, lambda _: None, 30.0)
                socket_path = str(tmp / "lease.sock")
                tunnel = LeaseTunnel(session, name)
                target = DirectTarget(address=address, passphrase="bench", accept_fingerprint=fingerprint)
                with (
                    portal.wrap_async_context_manager(serve_lease(tunnel, socket_path)),
                    client_from_path(socket_path, portal, unsafe=True, channel_options=TUNNELLED_OPTIONS) as routed,
                    client_from_target(target, portal, unsafe=True, interactive=False) as direct,
                ):
                    latency = interleaved_latency(
                        {
                            "direct": lambda: direct.bench.call("echo_async", 1),
                            "router": lambda: routed.bench.call("echo_async", 1),
                        },
                        settings,
                    )
                    direct_rates, router_rates = [], []
                    for _ in range(3):
                        direct_rates.append(stream_rate(direct.bench, settings.seconds))
                        router_rates.append(stream_rate(routed.bench, settings.seconds))
                    connects = connect_times(socket_path, portal, 10 if quick else 30)
                    import psutil

                    idle_rss = psutil.Process(controller_pid).memory_info().rss
                    with peak_rss(controller_pid) as peak:
                        per_stream = portal.call(concurrent_streams, socket_path, CONCURRENT, 2.0 if quick else 4.0)
                portal.call(session.release_lease, name)
                portal.call(session.close)
        finally:
            direct_proc.terminate()
            direct_proc.wait()
    result = {
        "unary_p50_us": {k: v["p50_us"] for k, v in latency.items()},
        "unary_p99_us": {k: v["p99_us"] for k, v in latency.items()},
        "unary_ratio_router_over_direct": latency["router"]["p50_us"] / latency["direct"]["p50_us"],
        "stream_64k_MBps": {"direct": median(direct_rates), "router": median(router_rates)},
        "stream_ratio_router_over_direct": median(router_rates) / median(direct_rates),
        "new_connection_ms_p50": 1000 * median(connects),
        "concurrent_streams": {
            "count": len(per_stream),
            "total_MBps": sum(per_stream),
            "min_MBps": min(per_stream),
            "median_MBps": statistics.median(per_stream),
            "max_MBps": max(per_stream),
            "min_over_median": min(per_stream) / statistics.median(per_stream),
            "router_rss_MB_before": idle_rss / 1e6,
            "router_rss_MB_peak": peak[0] / 1e6,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
