"""A griffe extension for the API pages: a docstring's `>>>` examples shown as code.

gdexp's docstrings put doctest examples in the running text (they run under pytest's
--doctest-modules); as Markdown, `[[0.1, 1.0], ...]` in an example's output would read as a
reference link. Each run of lines from a `>>>` line to the next blank line is fenced.
"""
from __future__ import annotations

import griffe


def fence(text: str) -> str:
    out, inside = [], False
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        if not inside and line.lstrip().startswith(">>>"):
            out.append(f"{indent}```pycon")
            inside = indent
        elif inside is not False and not line.strip():
            out.append(f"{inside}```")
            inside = False
        out.append(line)
    if inside is not False:
        out.append(f"{inside}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence(obj.docstring.value)
