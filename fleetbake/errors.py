"""Errors that reach the user as one line and a non-zero exit, never a traceback."""


class FleetbakeError(Exception):
    """A failure the user can act on. str() is the whole one-line message."""

    exit_code = 1


class UsageError(FleetbakeError):
    """Bad input: a file, an option or an environment variable."""

    exit_code = 2


class CannotBuildHere(FleetbakeError):
    """A row whose base or archive this machine cannot reach."""

    exit_code = 3
