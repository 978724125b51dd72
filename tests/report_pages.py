"""Reading a built report back: its markdown tables and the plotly figures of its HTML."""
from __future__ import annotations

import json
import re


def table(md: str, heading: str) -> list[dict]:
    """The first markdown table after `heading`, as dicts by column name."""
    lines = md[md.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return [dict(zip(rows[0], row)) for row in rows[2:]]


def plots(html: str) -> dict[str, dict]:
    """Every plotly figure of a report.html, by its div id."""
    found = re.findall(r'<script>gdexpPlot\("([^"]+)", (.*?)\);</script>', html)
    return {plot_id: json.loads(text.replace("<\\/", "</")) for plot_id, text in found}
