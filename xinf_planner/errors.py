"""Errors a user can cause, each with its documented exit code.

The CLI turns every ``XinfPlanError`` into one line on stderr and its exit code; a
user never sees a traceback for a mistake of theirs.

| code | meaning |
|------|---------|
| 0 | success |
| 1 | invalid input: schema or semantic validation failed, unknown model |
| 2 | usage error (click); also `diff`: there are changes to apply |
| 3 | nothing fits: explanation printed |
| 4 | drift: `status` found the running state differs from the plan |
| 5 | cannot reach the Xinference server, or it is too old for the plan |
| 6 | authentication or permission refused |
| 7 | apply failed (and was rolled back unless --keep-on-failure) |
| 8 | another apply holds the state lock |
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_NOTHING_FITS = 3
EXIT_DRIFT = 4
EXIT_UNREACHABLE = 5
EXIT_AUTH = 6
EXIT_APPLY_FAILED = 7
EXIT_LOCKED = 8


class XinfPlanError(Exception):
    """A failure to report as one line, with an exit code."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InvalidInput(XinfPlanError):
    """Bad user input: an unknown model, a malformed inventory, plan or intent."""

    exit_code = EXIT_INVALID


class NothingFits(XinfPlanError):
    exit_code = EXIT_NOTHING_FITS


class ServerUnreachable(XinfPlanError):
    exit_code = EXIT_UNREACHABLE


class ServerTooOld(XinfPlanError):
    exit_code = EXIT_UNREACHABLE


class AuthFailed(XinfPlanError):
    exit_code = EXIT_AUTH


class ApplyFailed(XinfPlanError):
    exit_code = EXIT_APPLY_FAILED


class StateLocked(XinfPlanError):
    exit_code = EXIT_LOCKED
