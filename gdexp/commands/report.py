"""`gdexp report` and `gdexp compare`: argument parsing lives with the report (gdexp.report)."""
from __future__ import annotations

from gdexp.report import main  # noqa: F401 - the command's entry point
