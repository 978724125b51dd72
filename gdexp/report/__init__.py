"""The report of a sweep (or several): report.html (interactive, self-contained) and report.md.

- select.py       which runs, their groups and curves (the report's one door to the store)
- build.py        the report folder from a selection: sections, figures, both renderings
- overlay.py      the figure that answers the sweep: final loss against lr, a line per group
- interactive.py  the plotly figures of report.html
- figures.py      the static (matplotlib) figures of report.md; animate.py the GIFs
- search.py       what lr_find and Optuna searched
- sharpness.py    sharpness against 2/lr under the training loss (the edge of stability)
- batch_size.py   best and largest stable lr against the mini-batch size, beside linear scaling
- sections.py     text sections: answers, runs table, provenance, how to reproduce
- render.py       blocks -> Markdown and HTML

The commands `gdexp report` and `gdexp compare` are gdexp.commands.report.
"""

UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default: the report's links to runs
