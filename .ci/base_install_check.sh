#!/usr/bin/env bash
# gdexp as a new user gets it: the README's first line in a fresh venv (`pip install .`, no
# extras), then, on that install, in a scratch folder, every named sweep and every documented
# command with small budgets, each checked for its exit status. A documented choice that needs
# an extra must say which, in one line (exit status 2). The main suite runs with every extra
# installed and cannot see what only the base install lacks (issue 9, item 1).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gdexp-base-XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$SECONDS
export MLFLOW_DISABLE_TELEMETRY=true
# pip's byte-compiling of every installed module (mlflow's thousands) is half of `pip install .`'s
# CPU; Python compiles what it imports, once, where it may write bytecode (.ci/run says why both
# variables are these).
export PIP_COMPILE=false PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_NO_COMPILE PYTHONDONTWRITEBYTECODE
unset MLFLOW_TRACKING_URI GDEXP_PARENT_RUN_ID
failures=0

note() { printf 'base install: %s\n' "$*"; }
fail() { note "FAILED: $*"; failures=$((failures + 1)); }

# run STATUS WHAT ARG...: the command must exit with STATUS; its output is shown only if not.
run() {
  local want=$1 what=$2; shift 2
  local log="$work/last.log" got=0
  timeout 600 "$@" >"$log" 2>&1 || got=$?
  if [ "$got" -ne "$want" ]; then
    fail "$what: exit status $got, expected $want: $*"
    tail -n 25 "$log" | sed 's/^/    /'
  else
    note "ok  $what ($((SECONDS - started)) s)"
  fi
}

# needs_extra EXTRA WHAT ARG...: refused in one line that names `pip install 'gdexp[EXTRA]'`.
needs_extra() {
  local extra=$1 what=$2; shift 2
  local err="$work/err.log" got=0
  "$@" >/dev/null 2>"$err" || got=$?
  if [ "$got" -ne 2 ] || [ "$(grep -c . "$err")" -ne 1 ] || ! grep -qF "pip install 'gdexp[$extra]'" "$err"; then
    fail "$what: expected one line naming pip install 'gdexp[$extra]' and exit status 2, got $got:"
    sed 's/^/    /' "$err" | tail -n 20
  else
    note "ok  $what says: $(cat "$err")"
  fi
}

# The checkout's files (not its venvs, stores or git folder), where the README's first line runs.
src="$work/gdexp"
mkdir -p "$src"
tar -C "$repo" --exclude=./.git --exclude='./.venv*' --exclude=./venv --exclude='*.db' --exclude='*.db.lock' \
    --exclude=./mlruns --exclude=./mlartifacts --exclude=./outputs --exclude=./multirun --exclude=./reports \
    --exclude='__pycache__' -cf - . | tar -C "$src" -xf -

# --- the README's first line, as printed --------------------------------------------------------------
first=$(awk '/^```bash$/ {inside=1; next} inside {print; exit}' "$repo/README.md")
case "$first" in
  *"pip install . "*) ;;
  *) fail "the README's first line is not a plain 'pip install .': $first" ;;
esac
cd "$src"
run 0 "README first line: $first" bash -c "$first"
venv="$src/.venv"
[ -x "$venv/bin/gdexp" ] || { fail "no gdexp in $venv after the README's first line"; exit 1; }
export PATH="$venv/bin:$PATH"
py="$venv/bin/python"
for extra in ray submitit jax psycopg2 torch; do
  if "$py" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$extra') is None)" 2>/dev/null; then
    fail "the base install brought $extra, an extra's package"
  fi
done

scratch="$work/scratch"
mkdir -p "$scratch/path/to" "$scratch/sweeps"
cd "$scratch"
printf 'col_a,col_b\n0,1\n1,3.1\n2,4.9\n3,7\n' > path/to/file.csv

# --- every command of the README's "Running" block, with a small budget where it sets none ----------
while IFS= read -r line; do
  case "$line" in
    *maxiter*|*max_iters*) ;;
    *) line="$line stopping.maxiter=30" ;;
  esac
  run 0 "README: $line" bash -c "$line"
done < <(awk '/^## Running/ {s=1} s && /^```bash$/ {b=1; next} b && /^```$/ {exit} b' "$repo/README.md" \
           | sed 's/[[:space:]]*#.*$//' | grep '^gdexp')

run 0 "gdexp --help" gdexp --help
for name in $("$py" -c "from gdexp.hydra.named_sweeps import available; print(' '.join(available()))"); do
  grep -q "gdexp +sweep=$name " "$work/last.log" || fail "gdexp --help does not list +sweep=$name"
done

# --- every named sweep, small budgets ----------------------------------------------------------------
light=tracking.curve_points=20   # fewer MLflow points a run: the same code, less logging time
for name in $("$py" -c "from gdexp.hydra.named_sweeps import available; print(' '.join(available()))"); do
  case "$name" in
    lr_grid) ;;  # the README's first line ran it, as printed
    lr_find) run 0 "+sweep=lr_find" gdexp +sweep=lr_find loss=quadratic stopping.maxiter=500 hydra.sweeper.rtol=0.1 ;;
    lr_optuna) run 0 "+sweep=lr_optuna" gdexp +sweep=lr_optuna loss=booth stopping.maxiter=100 "$light" \
                 hydra.sweeper.n_trials=4 hydra.sweeper.batch_size=2 hydra.sweeper.n_startup_trials=2 ;;
    *) run 0 "+sweep=$name" gdexp +sweep="$name" stopping.maxiter=50 "$light" ;;
  esac
done

# --- grids, every option of every group, the other launchers ------------------------------------------
run 0 "-m with grids" gdexp -m loss=booth 'optimizer.lr=logspace(1e-4,1,5)' 'stopping.gtol=sort(range(1e-6,3e-6,1e-6))' \
  stopping.maxiter=50
losses=$("$py" -c "from gdexp.hydra.paths import conf_dir; print(','.join(sorted(p.stem for p in (conf_dir()/'loss').glob('*.yaml') if p.stem not in ('custom', 'torch'))))")
run 0 "every loss (loss=$losses)" gdexp -m "loss=$losses" stopping.maxiter=5 "$light"
optimizers=$("$py" -c "from gdexp.hydra.paths import conf_dir; print(','.join(sorted(p.stem for p in (conf_dir()/'optimizer').glob('*.yaml'))))")
schedules=$("$py" -c "from gdexp.hydra.paths import conf_dir; print(','.join(sorted(p.stem for p in (conf_dir()/'schedule').glob('*.yaml'))))")
run 0 "every optimizer x schedule" gdexp -m loss=booth "optimizer=$optimizers" "schedule=$schedules" \
  stopping.maxiter=200 "$light"
run 0 "hydra/launcher=joblib" gdexp -m loss=booth optimizer.lr=0.01,0.1 stopping.maxiter=50 hydra/launcher=joblib \
  hydra.launcher.n_jobs=2
run 0 "the Python API" "$py" -c "import gdexp; assert gdexp.run(['loss=booth', 'stopping.maxiter=20'])['status']; \
assert len(gdexp.sweep(['loss=booth', 'optimizer.lr=0.01,0.1', 'stopping.maxiter=20'])) == 2"

# --- reports, reruns, resume, compare: docs/reports.md's first block, placeholders filled ------------
# (moved there from the README; tests/test_docs.py fills them the same way, and skips this block
# under .ci/run, which sets GDEXP_BASE_INSTALL_CHECKED once this script has passed)
# On a store of its own with a few runs of every kind of loss (2-D, many parameters, with
# measurements): `gdexp report --experiment gdexp` reads every run of the experiment.
mkdir -p "$scratch/reports" && cd "$scratch/reports"
run 0 "a sweep to report on" gdexp -m loss=booth,mlp,quadratic optimizer.lr=0.01,0.1 stopping.maxiter=30 "$light"
run 0 "a second sweep" gdexp -m loss=rosenbrock optimizer.lr=0.001,0.002 stopping.maxiter=30 "$light"
ids=$("$py" -c "
import gdexp
runs = gdexp.load_runs()  # the latest sweep
print(runs.sweep_id.iloc[0], runs.run_id.iloc[0])")
parent=${ids% *}
run_id=${ids#* }
sweeps=$("$py" -c "
from mlflow import MlflowClient
cl = MlflowClient('sqlite:///$scratch/reports/mlflow.db')
runs = cl.search_runs([e.experiment_id for e in cl.search_experiments()], \"tags.\`gdexp.sweep\` = 'true'\", max_results=2)
print(' '.join(r.info.run_id for r in runs))")
reports_block=$(awk '/^#+ Reports, reruns/ {s=1} s && /^```bash$/ {b=1; next} b && /^```$/ {exit} b' \
                  "$repo/docs/reports.md" | sed 's/[[:space:]]*#.*$//' | grep '^gdexp' || true)
[ "$(grep -c . <<< "$reports_block")" -ge 5 ] \
  || fail "docs/reports.md has no block of gdexp commands under its 'Reports, reruns' heading"
while IFS= read -r line; do
  line=${line//PARENT_RUN_ID/$parent}
  line=${line//RUN_ID/$run_id}
  line=${line//SWEEP_A/${sweeps% *}}
  line=${line//SWEEP_B/${sweeps#* }}
  line=${line//\/tmp\/lr-report/$scratch/lr-report}
  run 0 "docs/reports.md: $line" bash -c "$line"
done <<< "$reports_block"
[ -f "$scratch/lr-report/report.html" ] || fail "gdexp report --out wrote no report.html"
run 0 "gdexp compare" gdexp compare $sweeps --out "$scratch/compare"
for command in report compare rerun resume; do
  run 0 "gdexp $command --help" gdexp "$command" --help
done
cd "$scratch"

# --- what needs an extra says which --------------------------------------------------------------
needs_extra ray "hydra/launcher=ray" gdexp -m loss=booth optimizer.lr=0.01,0.1 hydra/launcher=ray
needs_extra slurm "hydra/launcher=submitit_local" gdexp -m loss=booth optimizer.lr=0.01,0.1 hydra/launcher=submitit_local
needs_extra slurm "hydra/launcher=submitit_slurm" gdexp -m loss=booth optimizer.lr=0.01,0.1 hydra/launcher=submitit_slurm
needs_extra postgres "a PostgreSQL store" gdexp loss=booth stopping.maxiter=5 \
  tracking.uri=postgresql+psycopg2://postgres@127.0.0.1:1/mlflow
printf 'import jax.numpy as jnp\n\n\ndef bowl(x):\n    return jnp.sum(x ** 2)\n' > jaxloss.py
needs_extra jax "loss=custom with a JAX function" gdexp loss=custom loss._target_=jaxloss.bowl loss.dim=2
needs_extra torch "loss=torch, your own network" gdexp loss=torch loss.model=mynet.net.model loss.dataset=iris

note "$((SECONDS - started)) s, $failures failed"
[ "$failures" -eq 0 ]
