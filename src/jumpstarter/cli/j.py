"""`j`: run driver commands against the exporter of the surrounding `jmp shell`.

Start-up matters (`j` runs in loops and hooks), so this module imports only the standard library.
Inside `jmp shell`, `j` hands its argv and its stdin/stdout/stderr file descriptors to the shell
process over `$JMP_J_SOCKET`; the shell already holds the gRPC connection and the client tree and
runs the command there, writing straight to our terminal. Elsewhere (any process with
`JUMPSTARTER_HOST`), `j` connects over gRPC itself.
"""

from __future__ import annotations

import json
import os
import socket
import sys

_FORWARDED_ENV = ("TERM", "COLUMNS", "LINES", "LANG", "LC_ALL", "NO_COLOR")


def _fast(path: str, argv: list[str]) -> int | None:
    """Run through the shell's command socket; None when it is not reachable."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
    except OSError:
        return None
    with sock:
        request = {
            "argv": argv,
            "cwd": os.getcwd(),
            "env": {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ},
        }
        payload = json.dumps(request).encode() + b"\n"
        socket.send_fds(sock, [payload], [0, 1, 2])
        reply = b""
        while not reply.endswith(b"\n"):
            try:
                chunk = sock.recv(4096)
            except KeyboardInterrupt:
                return 130
            if not chunk:
                return None if not reply else 1
            reply += chunk
    return int(json.loads(reply).get("exit_code", 1))


def main() -> None:
    """Entry point of the `j` program."""
    argv = sys.argv[1:]
    path = os.environ.get("JMP_J_SOCKET")
    if path:
        code = _fast(path, argv)
        if code is not None:
            sys.exit(code)
    from jumpstarter.cli.jslow import run

    sys.exit(run(argv))


if __name__ == "__main__":
    main()
