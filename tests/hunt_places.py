"""Positive controls for the secret hunt (fleetbake/worker/hunt.py): put the password in processes of the hunting
user, then become the hunt. Shared by tests/test_hunt.py (on the host) and tests/integration/test_hunt.py (in the
image). Standard library only: it runs in the image's /usr/bin/python3 too.

argv: the password reversed, a folder to link each holder's /proc/PID into ("" for none), the hunt's argv.
Prints `HOLDERS <in environ> <in cmdline> <in memory>` (their PIDs), then execs the hunt with the password in its
own environment. The holders are the hunt's children, so even under Yama's ptrace_scope=1 it may read their memory.
"""

HOLD = r"""
import os, subprocess, sys
reversed_password, links, *hunt = sys.argv[1:]
password = reversed_password[::-1]
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # outlive the output
in_environ = subprocess.Popen(["/bin/sleep", "300"], env={"LEAK": password}, **quiet)
in_cmdline = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)", password], env={}, **quiet)
in_memory = subprocess.Popen([sys.executable, "-c", "import os, time; s = os.read(0, 4096); os.write(1, b'+'); "
                              "time.sleep(300)"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env={})
in_memory.stdin.write(password.encode())
in_memory.stdin.close()
assert in_memory.stdout.read(1) == b"+"  # it holds the password (read from a pipe: in its memory only)
holders = [in_environ.pid, in_cmdline.pid, in_memory.pid]
for pid in holders if links else ():
    os.symlink(f"/proc/{pid}", os.path.join(links, str(pid)))
print("HOLDERS", *holders, flush=True)
os.execve(hunt[0], hunt, {"LEAK": password})
"""


def parse(out: str) -> tuple[list[int], str, set[str]]:
    """The holders' PIDs, the verdict line's first word (FOUND or NOTHING), the places it names."""
    lines = out.splitlines()
    [holders] = [line.split()[1:] for line in lines if line.startswith("HOLDERS ")]
    [verdict] = [line for line in lines if line.startswith(("FOUND", "NOTHING"))]
    word, _, rest = verdict.partition(" ")
    places = {"own environment"} if "own environment" in rest else set()
    return [int(pid) for pid in holders], word, places | set(rest.replace("own environment", "").split())


def expected(proc: str, holders: list[int]) -> set[str]:
    """Where each holder holds it: environ (and the stack, its memory), cmdline (and memory), memory alone."""
    in_environ, in_cmdline, in_memory = holders
    return {"own environment", f"{proc}/{in_environ}/environ", f"{proc}/{in_environ}/mem",
            f"{proc}/{in_cmdline}/cmdline", f"{proc}/{in_cmdline}/mem", f"{proc}/{in_memory}/mem"}
