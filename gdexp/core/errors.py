"""The one error type users see for bad input."""


class ConfigError(ValueError):
    """A config value that cannot be run, named by its dotted key.

    Raised before any MLflow run exists, so bad input leaves the store untouched.
    The commands print it as one line, ``gdexp: error: KEY=VALUE: reason``, and
    exit 2 (gdexp.commands.exits); the Python API raises it as it is.

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
