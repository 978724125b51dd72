"""The one error type users see for bad input."""


class ConfigError(ValueError):
    """A config value that cannot be run, named by its dotted key.

    Raised before any MLflow run exists, so bad input leaves the store untouched.

    >>> str(ConfigError("optimizer.lr", -1.0, "must be finite and > 0"))
    'optimizer.lr=-1.0: must be finite and > 0'
    """

    def __init__(self, key: str, value, reason: str):
        self.key, self.value, self.reason = key, value, reason
        super().__init__(f"{key}={value!r}: {reason}")

    def __reduce__(self):
        # A job's error crosses processes (joblib, Ray, submitit) pickled: rebuilt from its parts.
        return type(self), (self.key, self.value, self.reason)


class NotFound(ConfigError, LookupError):
    """Input naming what the store does not hold (a run id, an experiment, a sweep).

    A ConfigError, one line like any bad input; also a LookupError, which
    gdexp.load_runs raised for these before, so callers catching that still do.
    """


# The exit status of every gdexp command for input it refuses (a bad key or value, a grid
# that cannot be expanded, a store that cannot be used), before any MLflow run exists.
# argparse uses 2 too. A run or sweep that ran and failed exits 1.
EXIT_INVALID_INPUT = 2


class InvalidInputExit(SystemExit):
    """The exit of a command that refused its input: status EXIT_INVALID_INPUT, the error kept
    (gdexp.run and gdexp.sweep turn it back into the error)."""

    def __init__(self, error: Exception):
        super().__init__(EXIT_INVALID_INPUT)
        self.error = error


# Whether exit_invalid prints its line: the command does; gdexp.run and gdexp.sweep raise the
# error instead, and a caller would otherwise see it twice.
_PRINTS = [True]


def say_invalid(error: Exception) -> int:
    """Print `error` as gdexp's one-line error; returns EXIT_INVALID_INPUT.

    For the subcommands (report, compare, rerun, resume), whose main returns its status.
    """
    import sys

    print(f"gdexp: error: {error}", file=sys.stderr)
    return EXIT_INVALID_INPUT


def exit_invalid(error: Exception) -> "NoReturn":  # noqa: F821
    """Print `error` as gdexp's one-line error and exit with EXIT_INVALID_INPUT."""
    if _PRINTS[0]:
        say_invalid(error)
    raise InvalidInputExit(error)
