"""Every shell and Python block of the README and the docs site, run as printed.

Each page runs in a folder of its own (pytest's tmp_path) on the store a user gets there,
./mlflow.db (SQLite), its blocks in page order, so a block may use what an earlier one made
(`mypkg/losses.py`, then the sweep that descends it, then `gdexp rerun` of that sweep).
How a block is run:
- a shell block (bash): as a script under `set -euo pipefail`, every command must exit 0.
  A `gdexp` run or sweep that sets no budget gets `stopping.maxiter=30` (and a sweep its 20
  curve points), as .ci/base_install_check.sh does: the same code paths, seconds not minutes.
- a Python block: as a script; one whose first line names a file (`# mypkg/losses.py`) is
  written to that file instead (with an empty `__init__.py` beside it, as the page says).
- a YAML block whose header names `gdexp +sweep=NAME`: saved as sweeps/NAME.yaml, then that
  command is run.
- placeholders are filled as .ci/base_install_check.sh fills them: PARENT_RUN_ID (the latest
  sweep's parent), RUN_ID (one of its runs), SWEEP_A and SWEEP_B (the two latest sweeps),
  /tmp/lr-report (a folder of the page's own), multirun/2026-01-01/12-00-00 (the latest
  sweep's folder), path/to/file.csv (a small CSV file); a page that has made no sweep by then
  gets one or two small ones first (2-D and 3-D losses, 30 steps).
Not run here, each reported as a skip that says why: a block that names a server
(`mlflow server`, `mlflow ui`, `optuna-dashboard`), PostgreSQL, Ray, SLURM or a GPU; the README's first block
(it installs gdexp into a fresh venv and runs .ci/run: it is CI itself); a block printed twice
(docs/index.md repeats the README), run where it first appears; and, under .ci/run
(GDEXP_BASE_INSTALL_CHECKED=1), the blocks .ci/base_install_check.sh has just run on the plain
install (the README's "Running" block and docs/reports.md's first one), which a plain `pytest`
runs here.
After a page, every run in its store is FINISHED and every report folder named by `--out`
holds its report.html.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SHELL, PYTHON, FILE, SWEEP_FILE = "shell", "python", "file", "sweep file"
BUDGET = "stopping.maxiter=30"
LIGHT = "tracking.curve_points=20"
SUBCOMMANDS = {"report", "compare", "rerun", "resume", "--help", "-h", "--cfg", "--info"}

# (pattern, why): a block matching one names what this machine does not run in a test
NEEDS = [
    (r"\bmlflow (server|ui)\b", "starts an MLflow server"),
    (r"\boptuna-dashboard\b", "starts optuna-dashboard's server (a package of its own: pip install optuna-dashboard)"),
    (r"postgres|createdb|psycopg", "needs a PostgreSQL server"),
    (r"\bray\b", "needs a Ray cluster"),
    (r"slurm|submitit", "needs SLURM (submitit)"),
    (r"\b(cuda|gpu)\b", "needs a GPU"),
    (r"pip install|\.ci/run\b", "installs gdexp into a fresh venv (the README's first line: "
                                ".ci/base_install_check.sh runs it on the plain install; the second is .ci/run itself)"),
]
# (page, heading prefix): the first shell block under that heading, which
# .ci/base_install_check.sh runs on the plain install before .ci/run's pytest
BASE_INSTALL_BLOCKS = [("README.md", "Running"), ("docs/reports.md", "Reports, reruns")]


@dataclass
class Block:
    page: str      # relative to the repo
    line: int      # of the opening fence
    kind: str
    text: str
    heading: str   # the nearest heading above
    first_shell_of_heading: bool
    target: str = ""  # a file block's path, a sweep file's name

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def parse(path: Path) -> list[Block]:
    """The page's runnable blocks, in order."""
    page = str(path.relative_to(ROOT))
    found, heading, shells_here = [], "", 0
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"\s*```(\w*)", lines[i])
        if not m:
            if lines[i].startswith("#"):
                heading, shells_here = lines[i].lstrip("#").strip(), 0
            i += 1
            continue
        start, lang, body = i + 1, m.group(1).lower(), []
        i += 1
        while i < len(lines) and not lines[i].lstrip().startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        text = "\n".join(body) + "\n"
        if lang in ("bash", "sh", "shell", "console"):
            found.append(Block(page, start, SHELL, text, heading, shells_here == 0))
            shells_here += 1
        elif lang in ("python", "py"):
            named = re.match(r"#\s*([\w./-]+\.py)\b", body[0]) if body else None
            found.append(Block(page, start, FILE if named else PYTHON, text, heading, False,
                               named.group(1) if named else ""))
        elif lang in ("yaml", "yml"):
            sweep = re.search(r"^#\s*(gdexp \+sweep=(\w+).*)$", text, re.M)
            if sweep:
                found.append(Block(page, start, SWEEP_FILE, text, heading, False, sweep.group(2)))
    return found


def skip_reason(block: Block, first_seen: dict[str, Block]) -> str | None:
    earlier = first_seen.setdefault(block.text, block)
    if earlier is not block:
        return f"the same block as {earlier}, run there"
    if block.kind == FILE:
        return None
    for pattern, why in NEEDS:
        if re.search(pattern, block.text, re.I):
            return why
    if os.environ.get("GDEXP_BASE_INSTALL_CHECKED") and block.first_shell_of_heading and any(
            block.page == page and block.heading.startswith(heading) for page, heading in BASE_INSTALL_BLOCKS):
        return "run on the plain install by .ci/base_install_check.sh just before (GDEXP_BASE_INSTALL_CHECKED)"
    return None


def collect():
    first_seen: dict[str, Block] = {}
    run, skipped = {}, []
    for path in PAGES:
        for block in parse(path):
            why = skip_reason(block, first_seen)
            if why:
                skipped.append((block, why))
            else:
                run.setdefault(block.page, []).append(block)
    return run, skipped


RUN, SKIPPED = collect()


def shell_lines(text: str) -> list[str]:
    """The block's commands: continuation lines joined, comments dropped, budgets added."""
    out = []
    for line in re.sub(r"\s*\\\n\s*", " ", text).splitlines():
        line = re.sub(r"(^|\s+)#.*$", "", line).rstrip()
        if not line:
            continue
        words = line.split()
        if words[0] == "gdexp" and not (len(words) > 1 and words[1] in SUBCOMMANDS):
            if "maxiter" not in line:
                # a budget longer than any step count the line gives a schedule (warmup=100 < maxiter)
                steps = [int(n) + 10 for n in re.findall(r"schedule\.\w+=(\d+)\b", line)]
                line += f" {BUDGET}" if not steps or max(steps) <= 30 else f" stopping.maxiter={max(steps)}"
            if ("-m" in words or "+sweep=" in line) and "curve_points" not in line:
                line += f" {LIGHT}"
        out.append(line)
    return out


class Workspace:
    """A page's folder: its store, its files, and the values its placeholders stand for."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "GDEXP_PARENT_RUN_ID")}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env.get('PATH', '')}"
        self.env["MPLBACKEND"] = "Agg"
        # One BLAS thread a command unless set: on a busy machine (and with pages run side by side
        # under xdist) BLAS's spinning threads made docs/schedules.md's MLP sweep 4.5x slower
        # (33 s of CPU instead of 7.3 s), with the same results.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env.setdefault(var, "1")
        (folder / "path" / "to").mkdir(parents=True)
        (folder / "path" / "to" / "file.csv").write_text("col_a,col_b\n0,1\n1,3.1\n2,4.9\n3,7\n")
        (folder / "docs").mkdir()  # where docs/sharpness.md copies its figure to
        self.report_folders: list[Path] = []

    def sh(self, script: str, block: Block) -> None:
        done = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=self.folder, env=self.env,
                              capture_output=True, text=True, timeout=600)
        if done.returncode:
            pytest.fail(f"{block} exit status {done.returncode}:\n{script}\n--- output (tail) ---\n"
                        f"{(done.stdout + done.stderr)[-4000:]}", pytrace=False)

    def sweeps(self) -> list:
        """The store's sweep parents, latest first."""
        if not (self.folder / "mlflow.db").exists():
            return []
        from cli_runner import runs_of

        return runs_of(self.uri)[2]

    def fill(self, text: str, block: Block) -> str:
        wanted = 2 if re.search(r"SWEEP_[AB]", text) else int(bool(
            re.search(r"RUN_ID|multirun/2026-01-01/12-00-00", text)))
        small = [f"gdexp -m loss=booth,quadratic optimizer.lr=0.01,0.1 {BUDGET} {LIGHT}",
                 f"gdexp -m loss=rosenbrock optimizer.lr=0.001,0.002 {BUDGET} {LIGHT}"]
        text = text.replace("/tmp/lr-report", str(self.folder / "lr-report"))
        if not wanted:
            return text
        for command in small[len(self.sweeps()):wanted]:
            self.sh(command, block)
        from cli_runner import runs_of

        cl, children, parents = runs_of(self.uri)
        latest = parents[0].info.run_id
        run_id = next(r.info.run_id for r in children if r.data.tags["mlflow.parentRunId"] == latest)
        plans = sorted(self.folder.glob("multirun/*/*/gdexp-plan.json"), key=lambda p: p.stat().st_mtime)
        for old, new in [("PARENT_RUN_ID", latest), ("RUN_ID", run_id),
                         ("SWEEP_A", parents[0].info.run_id), ("SWEEP_B", parents[1].info.run_id if wanted == 2 else ""),
                         ("multirun/2026-01-01/12-00-00", str(plans[-1].parent.relative_to(self.folder)) if plans else "")]:
            text = text.replace(old, new)
        return text

    def run(self, block: Block) -> None:
        if block.kind == FILE:
            path = self.folder / block.target
            path.parent.mkdir(parents=True, exist_ok=True)
            for package in path.relative_to(self.folder).parents:
                if package != Path(".") and not (self.folder / package / "__init__.py").exists():
                    (self.folder / package / "__init__.py").write_text("")
            path.write_text(block.text)
        elif block.kind == PYTHON:
            script = self.folder / f"block_{block.line}.py"
            script.write_text(self.fill(block.text, block))
            self.sh(f"python {script.name}", block)
        else:
            source = block.text
            if block.kind == SWEEP_FILE:
                (self.folder / "sweeps").mkdir(exist_ok=True)
                (self.folder / "sweeps" / f"{block.target}.yaml").write_text(block.text)
                source = re.search(r"^#\s*(gdexp \+sweep=.*)$", block.text, re.M).group(1)
            script = self.fill("\n".join(shell_lines(source)), block)
            self.report_folders += [self.folder / m for m in re.findall(r"--out\s+(\S+)", script)]
            self.sh(script, block)


@pytest.mark.parametrize("page", sorted(RUN))
def test_every_block_of_a_page_runs_as_printed(page, tmp_path):
    ws = Workspace(tmp_path)
    for block in RUN[page]:
        ws.run(block)
    if (tmp_path / "mlflow.db").exists():
        from cli_runner import runs_of

        cl, children, parents = runs_of(ws.uri)
        assert children or parents
        assert {r.info.run_name: r.info.status for r in children + parents if r.info.status != "FINISHED"} == {}
    for folder in ws.report_folders:
        assert (folder / "report.html").is_file(), f"{page}: no report.html in {folder}"


@pytest.mark.parametrize("block, why", SKIPPED, ids=[str(b) for b, _ in SKIPPED])
def test_a_block_not_run_here_says_why(block, why):
    pytest.skip(f"{block} ({block.heading}): {why}")


def test_the_pages_have_blocks_to_run():
    """The parser finds what the pages hold: a page's shell blocks are run or named as skipped."""
    runnable = {b.page for blocks in RUN.values() for b in blocks}
    assert {"README.md", "docs/own-loss.md", "docs/reports.md", "docs/sweeps.md"} <= runnable
    kinds = {b.kind for blocks in RUN.values() for b in blocks}
    assert kinds == {SHELL, PYTHON, FILE, SWEEP_FILE}
    assert shell_lines("gdexp -m loss=booth \\\n  optimizer.lr=0.1,1   # two runs\n# a note\ngdexp report\n") == [
        f"gdexp -m loss=booth optimizer.lr=0.1,1 {BUDGET} {LIGHT}", "gdexp report"]
