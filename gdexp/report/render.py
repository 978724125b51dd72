"""One list of blocks, written out twice: report.md (figures beside it) and report.html (figures inside).

A block is a tuple:
    ("h", level, text)           heading
    ("p", text)                  paragraph
    ("ul", [text, ...])          bullet list
    ("table", header, rows, right)   rows of strings; `right`: indices of right-aligned columns
    ("img", file_name, alt)      a figure file in the report folder
    ("plot", id, figure, file_name, alt)   an interactive plotly figure (a dict: data, layout,
                                 config) in report.html; its still twin `file_name` in report.md
    ("code", text)               a shell block

Text may hold `code` spans and [links](http://...); they are the only inline markup.

report.html is one file that works offline: figures inlined as data: URIs, plotly.js
(from the plotly package) inlined once in the head when there is a plot, each plot
in a div whose id the report fixes. Nothing in it depends on the time or on chance,
so a rebuild from the same store gives the same bytes.
"""
from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

_MIME = {".png": "image/png", ".gif": "image/gif"}
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 0.2em; border-radius: 3px; }
pre { background: #f4f4f4; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; display: block; margin: 0.5em 0 1.2em; }
.plot { width: 100%; margin: 0.5em 0 1.2em; }
""".strip()
# Draws a figure and opens a run's MLflow page on a click: the address is a curve's
# `meta`, or the point's `customdata`.
_PLOT_JS = """
function gdexpPlot(id, fig) {
  var gd = document.getElementById(id);
  Plotly.newPlot(gd, fig.data, fig.layout, fig.config || {responsive: true, displaylogo: false});
  gd.on("plotly_click", function (e) {
    var p = e.points[0], u = p.data.meta || p.customdata;
    if (typeof u === "string" && /^https?:\\/\\//.test(u)) { window.open(u, "_blank", "noopener"); }
  });
}
""".strip()


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append(f"{'#' * block[1]} {block[2]}")
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            _, header, rows, right = block
            cell = lambda s: str(s).replace("|", "\\|")  # noqa: E731
            rule = ["---:" if i in right else "---" for i in range(len(header))]
            lines = [header, rule, *rows]
            out.append("\n".join("| " + " | ".join(cell(c) for c in line) + " |" for line in lines))
        elif kind == "img":
            out.append(f"![{_alt(block[2])}]({block[1]})")
        elif kind == "plot":
            _, _, _, name, alt = block
            out.append(f"![{_alt(alt)}]({name})" if name else f"_{alt}: interactive, in report.html._")
        elif kind == "code":
            out.append(f"```bash\n{block[1]}\n```")
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n\n".join(out) + "\n"


def _alt(text: str) -> str:
    """Alt text with its brackets escaped (a group label holds lists: `loss.eigenvalues=[1,10]`)."""
    return re.sub(r"([\[\]])", r"\\\1", text)


def to_html(blocks: list[tuple], title: str, folder: Path) -> str:
    """A self-contained page: figures inlined (data: URIs), plotly.js inlined once; no fetch."""
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>\n" + "\n".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "\n</ul>")
        elif kind == "table":
            _, header, rows, right = block
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            lines = ["".join(f'<td class="num">{_inline(c)}</td>' if i in right else f"<td>{_inline(c)}</td>"
                             for i, c in enumerate(row)) for row in rows]
            body.append(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
                        + "\n".join(f"<tr>{line}</tr>" for line in lines) + "\n</tbody>\n</table>")
        elif kind == "img":
            data = base64.b64encode((folder / block[1]).read_bytes()).decode("ascii")
            mime = _MIME[Path(block[1]).suffix]
            body.append(f'<img src="data:{mime};base64,{data}" alt="{html.escape(block[2])}">')
        elif kind == "plot":
            _, plot_id, figure, _, alt = block
            height = figure.get("layout", {}).get("height", 450)
            body.append(f'<div id="{html.escape(plot_id)}" class="plot" style="height:{height}px" '
                        f'role="img" aria-label="{html.escape(alt)}"></div>\n'
                        f'<script>gdexpPlot("{plot_id}", {figure_json(figure)});</script>')
        elif kind == "code":
            body.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
        else:
            raise ValueError(f"unknown block {kind!r}")
    scripts = ""
    if any(b[0] == "plot" for b in blocks):
        scripts = f"<script>{_plotly_js()}</script>\n<script>\n{_PLOT_JS}\n</script>\n"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n{scripts}</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def figure_json(figure: dict) -> str:
    """A figure as JSON safe inside <script>: non-finite numbers as null, no "</".

    >>> figure_json({"y": [1.0, float("nan")], "name": "</script>"})
    '{"y": [1.0, null], "name": "<\\\\/script>"}'
    """
    return json.dumps(_plain(figure), ensure_ascii=False, allow_nan=False).replace("</", "<\\/")


def _plain(value):
    """JSON-ready: numpy arrays and scalars as lists and numbers, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code> and [text](http...) into links.

    >>> _inline("see [run a](http://h/#/r?a=1&b=2) and `x<y`")
    'see <a href="http://h/#/r?a=1&amp;b=2">run a</a> and <code>x&lt;y</code>'
    """
    parts = re.split(r"`([^`]*)`", str(text))
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else _links(p) for i, p in enumerate(parts))


def md_escape(text: str) -> str:
    """Brackets escaped for a Markdown link text.

    >>> md_escape("lr=0.1-eigenvalues=[1,100]")
    'lr=0.1-eigenvalues=\\\\[1,100\\\\]'
    """
    return str(text).replace("[", "\\[").replace("]", "\\]")


def _links(text: str) -> str:
    # Link text may hold brackets escaped as \[ \] (run names such as lr=0.1-eigenvalues=[1,100]).
    parts = re.split(r"\[((?:\\.|[^\]\\])*)\]\((https?://[^)\s]*)\)", text)
    out = []
    for i in range(0, len(parts), 3):
        out.append(html.escape(parts[i]))
        if i + 2 < len(parts):
            label = re.sub(r"\\([\[\]])", r"\1", parts[i + 1])
            out.append(f'<a href="{html.escape(parts[i + 2])}">{html.escape(label)}</a>')
    return "".join(out)
