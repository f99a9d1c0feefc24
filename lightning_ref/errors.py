"""UsageError: a bad option or argument value of the Lightning layer, which manualnet-train reports as one line."""

import re


class UsageError(ValueError):
    """A bad option or argument value, named in the message: what the user asked for, not a bug in the code.

    The training CLI reports these as one line (exit code 2) when they stop a run before any work; every other
    exception keeps its traceback there. A ValueError, so callers that catch ValueError still catch it."""


# The form of every argument check's message, in manualnet and here: "<argument>: expected ..., got ...".
_NAMES_ITS_ARGUMENT = re.compile(r"^[\w.\[\]]+: ")


def as_usage_error(e: Exception) -> Exception:
    """A ValueError or TypeError from an argument check (its message names the argument) as a UsageError; any other
    exception (a bug's) unchanged, so that it keeps its traceback."""
    if isinstance(e, (ValueError, TypeError)) and _NAMES_ITS_ARGUMENT.match(str(e)):
        return e if isinstance(e, UsageError) else UsageError(str(e))
    return e
