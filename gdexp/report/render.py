"""One list of blocks, written out twice: report.md (figures beside it) and report.html (figures inside).

A block is a tuple:
    ("h", level, text)           heading
    ("p", text)                  paragraph
    ("ul", [text, ...])          bullet list
    ("table", header, rows, right)   rows of strings; `right`: indices of right-aligned columns
    ("img", file_name, alt)      a figure file in the report folder
    ("code", text)               a shell block

Text may hold `code` spans; they are the only inline markup.
"""
from __future__ import annotations

import base64
import html
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
            out.append(f"![{block[2]}]({block[1]})")
        elif kind == "code":
            out.append(f"```bash\n{block[1]}\n```")
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[tuple], title: str, folder: Path) -> str:
    """A self-contained page: every figure inlined as a data: URI, no external link or script."""
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
        elif kind == "code":
            body.append(f"<pre><code>{html.escape(block[1])}</code></pre>")
        else:
            raise ValueError(f"unknown block {kind!r}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    parts = re.split(r"`([^`]*)`", str(text))
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p)
                   for i, p in enumerate(parts))
