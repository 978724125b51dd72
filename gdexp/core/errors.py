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
