"""The pieces every section of a report page is made of: the page's CSS, escaped text, tables,
figures and embedded images. No JavaScript: tooltips are title attributes."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

from cnnlab.track.registry import Run

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ddd; }
.meta { color: #666; margin-top: 0; }
.scroll { max-width: 100%; overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .92rem; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td.num { text-align: left; }
table.runs td, table.runs th { max-width: 16rem; overflow-wrap: break-word; }
table.runs td.num, table.runs td:first-child { white-space: nowrap; max-width: none; }
[title] { text-decoration: underline dotted #999; cursor: help; }
tr.best td { background: #e6f4ea; font-weight: 600; }
tr.mean td { border-top: 2px solid #999; font-weight: 600; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(480px, 1fr)); gap: 1rem; }
.charts figure { margin: 0; } .charts img, img.wide { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9rem; text-align: center; }
ul.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .2rem 1.2rem;
            font-size: .85rem; }
.swatch { display: inline-block; width: 1.4em; height: .35em; margin-right: .4em;
          vertical-align: middle; }
pre { background: #f8f8f8; border: 1px solid #e3e3e3; padding: .6rem; overflow-x: auto;
      font-size: .82rem; }
details { border: 1px solid #ddd; border-radius: 6px; padding: .3rem 1rem; margin: 1rem 0; }
summary { cursor: pointer; font-weight: 600; font-size: 1.1rem; }
.finding b { color: #a33; } .note b { color: #a60; } .ok { color: #2a7; }
"""


def table(rows: list[list[str]], header: bool, css_class: str = "") -> str:
    """Rows of plain strings (escaped here); with header=True the first row and column are
    labels, as in a confusion matrix or a robustness table. Scrolls in its own box when wider
    than the page (a confusion matrix of 100 classes)."""
    html = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            is_label = (header and i == 0) or j == 0
            tag = "th" if is_label else "td"
            numeric = not is_label and is_number(cell)
            cells.append(f"<{tag}{' class=num' if numeric else ''}>{esc(cell)}</{tag}>")
        html.append(f"<tr>{''.join(cells)}</tr>")
    return scroll(f"<table{attr('class', css_class)}>{''.join(html)}</table>")


def scroll(html: str) -> str:
    return f"<div class=scroll>{html}</div>"


def clipped(value: str, limit: int = 32) -> str:
    """`value` escaped, cut to `limit` characters with the whole of it on hover."""
    if len(value) <= limit:
        return esc(value)
    return f"<span{attr('title', value)}>{esc(value[: limit - 1])}…</span>"


def figure(png: bytes, caption: str) -> str:
    return f"<figure>{image(png, caption)}<figcaption>{esc(caption)}</figcaption></figure>"


def image(png: bytes, alt: str, css_class: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img{attr("class", css_class)} alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def attr(name: str, value: str) -> str:
    """` name="value"`, escaped, or nothing for an empty value."""
    return f' {name}="{esc(value)}"' if value else ""


def status(run: Run) -> str:
    """summary.json's status, else the run's lock decides: running, or killed."""
    if "status" in run.summary:
        return str(run.summary["status"])
    return f"{run.status} (no summary.json yet)"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
