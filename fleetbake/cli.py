"""Glue for tasks.py: one-line errors and exit codes instead of tracebacks."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

from invoke import Exit

from fleetbake.errors import FleetbakeError


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn FleetbakeError into `error: <one line>` and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FleetbakeError as exc:
            # One line, whatever a library put in the message.
            message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise Exit(f"error: {message}", code=exc.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None

    return wrapper


def log(line: str) -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
