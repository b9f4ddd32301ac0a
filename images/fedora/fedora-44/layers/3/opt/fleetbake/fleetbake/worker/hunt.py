# Generated from matrix.yml (row fedora-44) by fleetbake: do not edit. Change the matrix, images/ or fleetbake/worker/, then run `invoke render`.
"""Look everywhere a build step can for the worker's password (stdlib only).

Run on a worker as a build step (the test master's `secret-hunt` builder sends
it) or as the build user with an empty environment. The argument is the
password reversed, so that no log holds the password itself; `-` reads it from
standard input instead, so that no command line holds it either (a build step
running beside the hunt could read the hunt's). Prints FOUND <places> and exits
1, or prints NOTHING.
"""

import os
import sys

PROC = "/proc"
# Where a build step's files may be, in the order walked. Both are module names so that a test on a host can
# point the hunt at a folder of its own (a host's /proc and /var are not a worker's).
TOPS = ("/buildarea", "/home", "/root", "/run", "/opt", "/etc", "/tmp", "/var")


# Memory and files are read this much at a time, never whole: QEMU's processes map a 1 GiB code buffer, a test
# its big heap, and the hunt runs within the worker's memory limit (under QEMU a 50 MB read buffer per file
# adds up until the kernel kills it).
CHUNK = 1 << 20


def _holds(handle, needle: bytes, start: int, end: int) -> bool:
    """Whether bytes [start, end) of an open file (or /proc/PID/mem) hold the needle; chunks overlap by its length."""
    at = start
    while at < end:
        try:
            handle.seek(at)
            data = handle.read(min(CHUNK + len(needle), end - at))
        except (OSError, ValueError, OverflowError):
            return False
        if needle in data:
            return True
        if len(data) <= len(needle):
            return False
        at += len(data) - len(needle) + 1
    return False


def main(reversed_password: str) -> int:
    needle = reversed_password[::-1].encode()
    found = []
    denied = []

    if needle in b"\0".join(k.encode() + b"=" + v.encode() for k, v in os.environ.items()):
        found.append("own environment")

    for pid in filter(str.isdigit, os.listdir(PROC)):
        if int(pid) == os.getpid():  # the hunter itself holds the needle
            continue
        for name in ("environ", "cmdline"):
            try:
                with open(f"{PROC}/{pid}/{name}", "rb") as handle:
                    if needle in handle.read():
                        found.append(f"{PROC}/{pid}/{name}")
            except OSError:
                denied.append(f"{PROC}/{pid}/{name}")
        try:  # memory: every readable mapping
            with open(f"{PROC}/{pid}/maps") as maps, open(f"{PROC}/{pid}/mem", "rb", 0) as mem:
                if any(_holds(mem, needle, *(int(x, 16) for x in line.split()[0].split("-"))) for line in maps):
                    found.append(f"{PROC}/{pid}/mem")
        except OSError:
            denied.append(f"{PROC}/{pid}/mem")

    for top in TOPS:
        for root, dirs, files in os.walk(top):
            for name in files:
                path = os.path.join(root, name)
                try:
                    with open(path, "rb", 0) as handle:
                        if _holds(handle, needle, 0, 50_000_000):
                            found.append(path)
                except OSError:
                    pass

    print("FOUND " + " ".join(found) if found else "NOTHING")
    print("DENIED " + " ".join(denied))
    return 1 if found else 0


def reversed_argument(argument: str, stdin) -> str:
    """The password reversed: the argument, or with `-` the first line of standard input."""
    return stdin.readline().rstrip("\n") if argument == "-" else argument


if __name__ == "__main__":
    sys.exit(main(reversed_argument(sys.argv[1], sys.stdin)))
