"""What a run or a sweep that started can end with, short of success, as typed errors.

Raised by the layers below the commands, which alone turn them into a printed
line and an exit status (gdexp.commands.exits); the Python API raises them as
they are. Each says what happened and what was kept, so that nothing a caller
needs is only in a printed line.
"""
from __future__ import annotations

from pathlib import Path


class Unrecorded(RuntimeError):
    """Runs the store did not take, kept on disk for ``gdexp resume`` (gdexp.tracking.pending).

    Attributes:
        kept: how many runs are kept on disk.
        uri: the store that did not take them.
        reason: why, in a few words.
        folder: the sweep's (or the single run's) folder; ``gdexp resume FOLDER`` records them.
    """

    def __init__(self, kept: int, uri: str, reason: str, folder: Path):
        from gdexp.tracking.pending import resume_message

        self.kept, self.uri, self.reason, self.folder = kept, uri, reason, Path(folder)
        super().__init__(resume_message(kept, None, uri, reason, self.folder))

    def __reduce__(self):
        return type(self), (self.kept, self.uri, self.reason, self.folder)


class RunsFailed(RuntimeError):
    """A sweep that ran to its end, with `failed` of its `runs` runs FAILED (each with its gdexp.error tag,
    or, for a job that failed before its run existed, said as 'job not run')."""

    def __init__(self, failed: int, runs: int, message: str | None = None):
        self.failed, self.runs = failed, runs
        super().__init__(message or f"gdexp: {failed} of {runs} runs failed (their errors are above)")

    def __reduce__(self):
        return type(self), (self.failed, self.runs, str(self))


class SearchFailed(RuntimeError):
    """A search (lr_find, Optuna) whose runs were recorded and its parent closed, but which found no answer."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a sweep, after its parent and open runs were closed KILLED.

    Attributes:
        status: the exit status a command ends with (128 + the signal).
    The message says how many runs were recorded and how to finish (``gdexp resume``).
    """

    def __init__(self, message: str, status: int):
        self.status = status
        super().__init__(message)
