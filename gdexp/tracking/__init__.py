"""The tracking layer: the only code that imports MLflow.

- store.py       where runs go: the tracking URI, the client, the experiment, a safe first creation
- record.py      what a run is in MLflow: params, curves, tags, artifacts, and closing it
- reader.py      runs and curves read back as typed tables (load_runs, load_curve)
- parent_run.py  a sweep's parent run: opened before its jobs, closed with the summary
- pending.py     runs the store could not take, kept on disk for `gdexp resume`
- stale_sweeps.py sweeps a dead process left RUNNING, closed KILLED; an unfinished one of the same configs named
- env.py         what a sweep hands its jobs through the environment
- guards.py      checks that turn silent run loss into one clear error
- writes.py      each write whole (interrupts held), a locked store waited for, open runs known
- interrupts.py  Ctrl-C and SIGTERM: one way to stop, never inside a store write
- plan.py        a sweep's plan (jobs, config hashes, its process), for `gdexp resume` and reports
- provenance.py  versions, platform and git state recorded on a sweep
- bulk.py        a chunk of finished runs recorded at once, or kept on disk when the store cannot take it
- live.py        each run's real start and end, and its record written while it descends (tracking.live_every)
- fast/          the fast write path for finished runs into MLflow's SQL tables (fenced by schema revision)
- content.py     a run's params, metrics, tags and files as values (no MLflow import)
- config.py      the `tracking` config section

`import mlflow` costs most of a second: every module imports it inside the
functions that need it, so `import gdexp.tracking` stays cheap.
"""

TAG = "gdexp."  # prefix of every tag gdexp owns
