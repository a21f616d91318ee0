"""SIGTERM handled like Ctrl-C while a process holds something to give back (a lease).

CI runners cancel a job with SIGTERM (GitLab, `timeout`, GitHub after its SIGINT); Python's default
is to die at once, which leaves a requested lease queued or held until it expires. `jmp create
lease`, `jmp shell -l` and the pytest plugin's leases use this. Inside
`terminate_as_interrupt()` the first SIGTERM raises KeyboardInterrupt instead (so the `finally`
blocks that release the lease run), or, while a command runs in the foreground, is passed on to
that command, whose exit then ends the shell the usual way.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def terminate_as_interrupt(
    foreground: Callable[[], subprocess.Popen[Any] | None] = lambda: None,
) -> Iterator[None]:
    """While inside, SIGTERM goes to `foreground()` when that is a running process, else raises
    KeyboardInterrupt once (later ones are ignored, so cleanup is not interrupted)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        yield
        return
    interrupted = False

    def on_sigterm(signum: int, frame: Any) -> None:
        nonlocal interrupted
        child = foreground()
        if child is not None:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            return  # the command ends (or has ended) and the shell cleans up after it
        if not interrupted:
            interrupted = True
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
