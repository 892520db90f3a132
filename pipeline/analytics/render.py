"""Render a query result for a terminal or a pipe: a fixed-width table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def cell_text(value: Any) -> str:
    """A value as a person reads it: ``-`` for none, lists as ``a, b``, pairs as ``a 3``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ", ".join(cell_text(v) for v in value)
    if isinstance(value, tuple):
        return " ".join(cell_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {cell_text(v)}" for k, v in value.items())
    return str(value)


def render_table(result: dict[str, Any]) -> str:
    columns: list[str] = result["columns"]
    rows = [[cell_text(v) for v in row] for row in result["rows"]]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    numeric = [all(_is_number(r[i]) for r in rows) and rows for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    if not rows:
        out.append("(no rows)")
    return "\n".join(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def render_csv(result: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result["columns"])
    writer.writerows(
        [cell_text(v) if isinstance(v, list | tuple | dict) else v for v in row]
        for row in result["rows"]
    )
    return out.getvalue().rstrip("\n")


def render_json(result: dict[str, Any]) -> str:
    """One object per row, keyed by column."""
    records = [dict(zip(result["columns"], row, strict=True)) for row in result["rows"]]
    return json.dumps(records, default=str, indent=1)


def render(result: dict[str, Any], fmt: str) -> str:
    """A query result as ``table``, ``json`` or ``csv``."""
    return {"table": render_table, "json": render_json, "csv": render_csv}[fmt](result)
