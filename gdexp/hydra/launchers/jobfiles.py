"""A job's .hydra files (config.yaml, hydra.yaml, overrides.yaml), as Hydra writes them, fast.

Hydra writes each job's config, its hydra node and its overrides with OmegaConf's YAML
dumper: ~3-8 ms a job, more than a job's descent and record together. The jobs of a
sweep differ in a few values only (the swept keys; in hydra.yaml the job's number,
overrides and folder). So each file is dumped once per template with a placeholder
for every value that differs, and a job's file is the template with its values, each
dumped by the same dumper, spliced in. A template is used only after it gave the very
bytes of a full dump for the first job it serves (checked), and a value is spliced
only where it is one line that cannot wrap (short, or without spaces): any other job
gets a full dump. A list or dict value (``init=[-1.5,2.0]``, the same in every job of most
sweeps) is not spliced but kept in the template, whose key then holds that value: a job
with another one gets its own template. tests/hydra/test_sweeps.py compares job folders with
Hydra's own.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

import yaml

from gdexp.hydra.internals import fast_omega_conf_dumper

# Fields of the hydra node that differ from job to job (the rest is the sweep's).
_HYDRA_FIELDS = (("job", "num"), ("job", "id"), ("job", "override_dirname"), ("runtime", "output_dir"))
_SHORT = 60  # characters a spliced value may have: with the key and indent, far below YAML's 80-column wrap


def dump(obj) -> str:
    """The text OmegaConf.to_yaml would give (the same dumper and options)."""
    return yaml.dump(obj, default_flow_style=False, allow_unicode=True, sort_keys=False, Dumper=fast_omega_conf_dumper())


class JobFiles:
    """Writes the .hydra files of a sweep's jobs, keeping one checked template per file shape."""

    def __init__(self):
        self._templates: dict[tuple, tuple[str, list[str]] | None] = {}

    def write(self, folder: Path, config: dict, hydra: dict, changed: tuple[tuple[str, ...], ...],
              selection: tuple[str, ...]) -> None:
        """Write folder/config.yaml, hydra.yaml and overrides.yaml of one job.

        Args:
            config: the job's task config; `changed`: the key paths of it the job's
                overrides set (the values that differ between the sweep's jobs), or None
                where other values may differ too (the config has interpolations).
            hydra: the job's hydra node.
            selection: the job's group choices (its structural overrides): jobs with the
                same selection and changed paths have the same files but for those values.
        """
        # The job's folder, then .hydra in it: two system calls (mkdir(parents=True) on
        # .hydra first fails, then makes the parent, then retries: three).
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(exist_ok=True)
        task = list(hydra["overrides"]["task"])
        items = tuple((i,) for i in range(len(task)))
        hydra_paths = (*(("hydra", *f) for f in _HYDRA_FIELDS), *(("hydra", "overrides", "task", *i) for i in items))
        shape = (selection, changed)
        (folder / "config.yaml").write_text(dump(config) if changed is None
                                            else self._render(("config", shape), config, changed))
        (folder / "hydra.yaml").write_text(self._render(("hydra", shape), {"hydra": hydra}, hydra_paths))
        (folder / "overrides.yaml").write_text(self._render(("overrides", len(task)), task, items))

    def _render(self, key: tuple, obj, paths: tuple[tuple, ...]) -> str:
        try:
            found = [_get(obj, p) for p in paths]
        except (KeyError, IndexError, TypeError):  # a path it lacks
            return dump(obj)
        # A list or dict value stays in the template's text: the template's key holds it.
        nested = tuple((p, _frozen(v)) for p, v in zip(paths, found) if isinstance(v, (dict, list, tuple)))
        if nested:
            key = (*key, nested)
            paths = tuple(p for p, v in zip(paths, found) if not isinstance(v, (dict, list, tuple)))
            found = [v for v in found if not isinstance(v, (dict, list, tuple))]
        try:
            values = [_scalar(v) for v in found]
        except TypeError:
            return dump(obj)
        if not all(_spliceable(v) for v in values):
            return dump(obj)
        if key not in self._templates:
            self._templates[key] = self._template(obj, paths)
            template = self._templates[key]
            if template is None:
                return dump(obj)
            full = dump(obj)
            if _splice(template, values) != full:  # the template does not give Hydra's bytes: never use it
                self._templates[key] = None
            return full
        template = self._templates[key]
        return dump(obj) if template is None else _splice(template, values)

    @staticmethod
    def _template(obj, paths: tuple[tuple, ...]) -> tuple[list[str], list[int]] | None:
        """(the text cut at each placeholder, the paths' indices in text order) for `obj` with every path's value
        replaced by a unique placeholder; None where a placeholder does not come out verbatim."""
        marked = copy.deepcopy(obj)
        marks = [f"GDEXPVALUE{i}X" for i in range(len(paths))]
        for path, mark in zip(paths, marks):
            _set(marked, path, mark)
        text = dump(marked)
        if any(text.count(mark) != 1 for mark in marks):
            return None
        order = sorted(range(len(marks)), key=lambda i: text.index(marks[i]))  # the marks in text order
        pieces = []
        for i in order:
            head, text = text.split(marks[i])
            pieces.append(head)
        pieces.append(text)
        return pieces, order


def _splice(template, texts: list[str]) -> str:
    pieces, order = template
    out = [pieces[0]]
    for i, piece in zip(order, pieces[1:]):
        out += [texts[i], piece]
    return "".join(out)


@lru_cache(maxsize=4096)
def _scalar_text(kind: type, spelled: str, value) -> str:
    return dump({"k": value})[len("k: "):].rstrip("\n")


def _scalar(value) -> str:
    """A scalar as the dumper writes it after `key: ` (or `- `); TypeError for a list or dict."""
    if isinstance(value, (dict, list, tuple)):
        raise TypeError("not a scalar")
    # The type and the repr too: 1, 1.0 and True are equal keys, and so are 0.0 and -0.0.
    return _scalar_text(type(value), repr(value) if isinstance(value, float) else "", value)


def _frozen(value):
    """A list or dict as a key equal only to one that dumps to the same text (types and
    float spellings kept: 1 == 1.0 == True and 0.0 == -0.0 in Python)."""
    if isinstance(value, dict):
        return ("dict", tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_frozen(v) for v in value))
    return (type(value), repr(value))


def _spliceable(text: str) -> bool:
    """Whether a value's text reads the same wherever it is spliced: one line, not a block
    scalar, and no place the emitter could wrap it at its 80-column width: short, or without a
    space (plain and single-quoted scalars wrap only at spaces; double-quoted ones may wrap
    anywhere, so they stay short)."""
    if "\n" in text or text.startswith(("|", ">")):
        return False
    return len(text) <= _SHORT or (" " not in text and not text.startswith('"'))


def _get(obj, path):
    for part in path:
        obj = obj[part]
    return obj


def _set(obj, path, value) -> None:
    for part in path[:-1]:
        obj = obj[part]
    obj[path[-1]] = value
