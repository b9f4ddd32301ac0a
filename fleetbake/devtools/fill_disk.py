"""Fill the buildarea's filesystem below the worker's threshold, as a build step could (stdlib only).

The test master's `fill-disk` builder sends it. It writes `fill.bin` in its working directory
(the builder's build/ folder) until half of WORKER_MIN_FREE_GB is left free, then keeps running
there for `seconds` (default 40), as a long build step does, so that a test sees the worker
unhealthy, with the reason, while the build runs, and sees the running build's file kept.
It refuses a filesystem over 1 GB: it is meant for a small dedicated one (a tmpfs buildarea).
"""

import errno
import os
import sys
import time

GB = 1024**3
LARGEST = 1 * GB


def main(seconds: float) -> int:
    info = os.statvfs(".")
    size = info.f_blocks * info.f_frsize
    if size > LARGEST:
        print(f"refused: this filesystem holds {size / GB:.1f} GB; fill-disk only fills a small dedicated one "
              "(at most 1 GB, e.g. --tmpfs /buildarea:size=64m)")
        return 1
    # 10: disk.DEFAULT_MIN_FREE_GB (this file runs alone, as a build step; the test sets the variable).
    threshold = float(os.environ.get("WORKER_MIN_FREE_GB") or 10) * GB
    free = info.f_bavail * info.f_frsize
    left = max(0, free - int(threshold / 2))
    chunk = b"\0" * (1 << 20)
    written = 0
    with open("fill.bin", "wb") as handle:
        try:
            while left > 0:
                count = handle.write(chunk[: min(left, len(chunk))])
                written, left = written + count, left - count
                handle.flush()
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    after = os.statvfs(".")
    print(f"wrote {written} bytes to {os.path.abspath('fill.bin')}; {after.f_bavail * after.f_frsize} bytes free, "
          f"the worker's threshold is {int(threshold)}", flush=True)
    time.sleep(seconds)
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 40))
