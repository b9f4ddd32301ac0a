"""The one way fleetbake runs a program: its failure reaches the user as one line naming the cause.

`run` returns the program's output and raises ProcError when it fails; `call` gives
the exit code to callers that decide for themselves. Either way a program that is
not installed, or that outlives its timeout, is a ProcError, never a traceback.

Without `stream`, stdout and stderr are read apart (stdout is the output, the
reason comes from stderr first). With `stream`, stderr joins stdout so that the
lines reach the callback in the order the program wrote them.
"""

from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from fleetbake.errors import FleetbakeError


class ProcError(FleetbakeError):
    """str() is `<what> failed: <reason>`; `code` is None when the program never ran to an exit."""

    def __init__(self, message: str, code: int | None = None, output: str = "", errors: str = ""):
        super().__init__(message)
        self.code = code
        self.output = output
        self.errors = errors


@dataclass(frozen=True)
class Result:
    code: int
    output: str  # stdout (with stderr in it when streamed)
    errors: str = ""  # stderr, when not streamed


Reason = Callable[[Result], "str | None"]


def last_line(text: str) -> str | None:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), None)


def reason_of(result: Result) -> str:
    """The last non-empty line of stderr, else of stdout: where programs put their final word."""
    return last_line(result.errors) or last_line(result.output) or f"exit {result.code}, no output"


def run(
    args: Sequence[str | os.PathLike],
    *,
    what: str | None = None,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    stream: Callable[[str], object] | None = None,
    reason: Reason | None = None,
    error: type[ProcError] = ProcError,
) -> str:
    """The program's output; `error` (a ProcError subclass) when it exits non-zero.

    `what` names the step in the message (default: the program's name); `reason`
    picks the cause from the result when the last line is not it (None: the default).
    """
    result = call(args, what=what, cwd=cwd, env=env, timeout=timeout, input=input, stream=stream, error=error)
    if result.code != 0:
        cause = (reason(result) if reason else None) or reason_of(result)
        raise error(f"{_what(args, what)} failed: {cause}", result.code, result.output, result.errors)
    return result.output


def call(
    args: Sequence[str | os.PathLike],
    *,
    what: str | None = None,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    input: str | None = None,
    stream: Callable[[str], object] | None = None,
    error: type[ProcError] = ProcError,
) -> Result:
    """Run to the end whatever the exit code; only a program that cannot run or times out raises."""
    argv = [os.fspath(arg) for arg in args]
    name = _what(argv, what)
    try:
        if stream is None:
            done = subprocess.run(argv, cwd=cwd, env=env, timeout=timeout, input=input, capture_output=True,
                                  text=True, errors="replace", check=False)
            return Result(done.returncode, done.stdout, done.stderr)
        return _streamed(argv, cwd, env, timeout, input, stream, name, error)
    except subprocess.TimeoutExpired:
        raise error(f"{name} failed: still running after {timeout:g}s, stopped") from None
    except FileNotFoundError:
        missing = f"no directory {cwd}" if cwd is not None and not Path(cwd).is_dir() else f"{argv[0]}: command not found"
        raise error(f"{name} failed: {missing}") from None
    except OSError as exc:
        raise error(f"{name} failed: {exc.strerror or exc}: {exc.filename or argv[0]}") from None


def _streamed(argv: list[str], cwd, env, timeout, input, stream, name: str, error: type[ProcError]) -> Result:
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    expired = threading.Event()

    def stop() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, stop) if timeout else None
    if timer:
        timer.start()
    if input is not None:  # from a thread of its own: a program that writes before it reads never blocks us
        def feed() -> None:
            try:
                process.stdin.write(input)
                process.stdin.close()
            except BrokenPipeError:
                pass

        threading.Thread(target=feed, daemon=True).start()
    lines = []
    try:
        for raw in process.stdout:
            line = raw.rstrip("\r\n")
            lines.append(line)
            stream(line)
        code = process.wait()
    finally:
        if timer:
            timer.cancel()
        if process.poll() is None:  # the callback raised: the program does not outlive us
            process.kill()
            process.wait()
        process.stdout.close()
    if expired.is_set():
        raise error(f"{name} failed: still running after {timeout:g}s, stopped", None, "\n".join(lines))
    return Result(code, "\n".join(lines) + ("\n" if lines else ""))


def _what(args: Sequence[str | os.PathLike], what: str | None) -> str:
    return what or os.path.basename(os.fspath(args[0]))
