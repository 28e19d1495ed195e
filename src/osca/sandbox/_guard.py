"""Main process of a one-shot sandbox container: keeps the container's lifetime tied to its host (stdlib only).

The host sends one JSON line on stdin, {"nonce", "deadline"}, and keeps stdin open while it waits. The guard
starts the runner with the nonce in the runner's environment only (never in docker-init's, which stays readable
from /proc/1/environ), then exits as soon as the runner exits, stdin closes (the host process is gone, the
container was created with StdinOnce) or `deadline` seconds pass. docker-init exits with it, so the kernel
kills whatever is left in the container and Docker removes it (auto_remove): no container outlives its host or
its deadline (issue 12).
"""

import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, "/job")
from runner import _undumpable  # noqa: E402  (shared with the runner)

RUNNER = ["python3", "-I", "/job/runner.py"]
HELLO_TIMEOUT = 30.0


def _first_line(fd, timeout):
    """The first line on `fd`, read byte by byte (so nothing past it is consumed), or None on EOF/timeout."""
    end = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, end - time.monotonic()))
        if not ready:
            return None
        byte = os.read(fd, 1)
        if not byte:
            return None
        line += byte
    return line


def main():
    _undumpable()
    line = _first_line(0, HELLO_TIMEOUT)
    if line is None:
        sys.exit(125)
    hello = json.loads(line)
    runner = subprocess.Popen(RUNNER, stdin=subprocess.DEVNULL, env={**os.environ, "OSCA_NONCE": hello["nonce"]})
    exited = os.pidfd_open(runner.pid)
    end = time.monotonic() + float(hello["deadline"])
    while True:
        ready, _, _ = select.select([0, exited], [], [], max(0.0, end - time.monotonic()))
        if exited in ready:
            sys.exit(runner.wait())
        if not ready or not os.read(0, 4096):  # past the deadline, or the host is gone
            sys.stderr.write("osca guard: %s\n" % ("deadline passed" if not ready else "host gone"))
            os._exit(124)


if __name__ == "__main__":
    main()
