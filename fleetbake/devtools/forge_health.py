"""Try to make the worker look healthy while it is not, as a build step could (stdlib only).

The test master's `secret-hunt` builder sends it. It writes a "connected" state
wherever the HEALTHCHECK might read one and into every descriptor it can reach,
and leaves a process behind that keeps trying for `seconds` (default 120), so
that a test can take the master away and see that health still says so.
Prints one line per attempt: WROTE/CHANGED (a forgery got through) or DENIED.
"""

import glob
import os
import sys
import time

FORGED = "connected forged-by-a-build-step\n"
TARGETS = ["/tmp/fleetbake/health", "/tmp/fleetbake/health.1", "/tmp/fleetbake-worker.health"]


def attempt(quiet: bool = False) -> None:
    own = f"/proc/{os.getpid()}/"
    for path in [*TARGETS, *glob.glob("/proc/[0-9]*/fd/*")]:
        if path.startswith(own):
            continue
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(FORGED)
            quiet or print("WROTE", path)
        except OSError as exc:
            quiet or print("DENIED", path, exc.strerror)
    for name, op in (("rename", lambda: os.rename("/tmp/fleetbake", "/tmp/fleetbake.gone")),
                     ("symlink", lambda: os.symlink("/tmp/forged", "/tmp/fleetbake/health.2"))):
        try:
            op()
            quiet or print("CHANGED /tmp/fleetbake by", name)
        except OSError as exc:
            quiet or print("DENIED", name, exc.strerror)


def main(seconds: float) -> None:
    attempt()
    if os.fork() == 0:  # outlives the step, as a build step's leftover could
        os.setsid()
        # Off the step's output, as a daemon would be: the worker ends a step once its output closes, and would
        # otherwise wait for this leftover (a 120 s build for a step that took a moment).
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(quiet, fd)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            attempt(quiet=True)
            time.sleep(0.2)
        os._exit(0)
    print("forger left running for", seconds, "s")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 120)
