"""Tables as data: rendered to Markdown or HTML from the same rows."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def fmt(value: Any) -> str:
    """Human formatting: ints with thousands separators, floats to 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        return f"{value:.4g}"
    return str(value)


def _md_cell(text: str) -> str:
    """A Markdown table cell: a ``|`` in it (a layer or run name) is escaped so it cannot split the row."""
    return text.replace("|", "\\|")


@dataclass
class Table:
    """A titled table: header plus rows of already-chosen values."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    note: str = ""

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", ""] if self.title else []
        lines.append("| " + " | ".join(_md_cell(h) for h in self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(_md_cell(fmt(v)) for v in row) + " |" for row in self.rows]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in self.rows)
        title = f"<h3>{html.escape(self.title)}</h3>" if self.title else ""
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return f"{title}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
