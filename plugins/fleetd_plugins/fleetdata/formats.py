"""Output formats of reports and exports: CSV, JSON and XLSX, written batch by batch.

Owns the encoders: each takes rows (tuples in column order, as the data source streams
them) one batch at a time and never holds more than that batch, so an export of any
size runs in flat memory. All methods are blocking (call them in a worker thread).

- CSV: RFC 4180 (`csv` module, CRLF line ends), UTF-8, one header line; NULL is empty.
- JSON: one array of objects, streamed as `[`, the objects, `]`; valid JSON however it
  is cut into batches.
- XLSX: openpyxl in write-only mode (rows go to a temporary XML file, not to memory);
  timestamps and dates become real Excel date cells (UTC, without a zone: Excel has
  none), and a sheet that reaches Excel's 1,048,576-row limit continues on a new sheet
  ("gps_tracks (2)") with the header repeated.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openpyxl.worksheet._write_only import WriteOnlyWorksheet

__all__ = [
    "FORMATS",
    "Column",
    "CsvEncoder",
    "JsonEncoder",
    "XlsxBook",
    "media_type",
    "parse_columns",
]

FORMATS = ("json", "csv", "xlsx")
# Excel's hard limit per sheet (2^20 rows), the header included.
XLSX_MAX_ROWS = 1_048_576
# Excel sheet titles: at most 31 characters.
XLSX_TITLE = 31
Row = Sequence[Any]


def media_type(fmt: str) -> str:
    return {
        "csv": "text/csv",
        "json": "application/json",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }[fmt]


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a report or an export. kind: text, int, float, ts (ISO text in UTC,
    'YYYY-MM-DDTHH:MM:SSZ') or date ('YYYY-MM-DD')."""

    name: str
    kind: str = "text"


def parse_columns(*spec: str) -> list[Column]:
    """`"name:kind"` → Column(name, kind); kind defaults to text."""
    out = []
    for item in spec:
        name, _, kind = item.partition(":")
        out.append(Column(name, kind or "text"))
    return out


class CsvEncoder:
    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)

    def begin(self) -> bytes:
        return self._lines([[c.name for c in self.columns]])

    def rows(self, batch: Sequence[Row]) -> bytes:
        return self._lines(batch)

    def end(self) -> bytes:
        return b""

    @staticmethod
    def _lines(rows: Sequence[Row]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)  # None is written as an empty field
        return buf.getvalue().encode("utf-8")


class JsonEncoder:
    """`[{...},\\n{...}]`: the separator goes before every object but the first."""

    def __init__(self, columns: Sequence[Column]) -> None:
        self.names = [c.name for c in columns]
        self.first = True

    def begin(self) -> bytes:
        return b"["

    def rows(self, batch: Sequence[Row]) -> bytes:
        if not batch:
            return b""
        dumps, names = json.dumps, self.names
        body = ",\n".join(
            dumps(dict(zip(names, row, strict=True)), ensure_ascii=False) for row in batch
        )
        prefix = "\n" if self.first else ",\n"
        self.first = False
        return (prefix + body).encode("utf-8")

    def end(self) -> bytes:
        return b"\n]\n"


def _ts_cell(value: Any) -> Any:
    return datetime.fromisoformat(value[:-1]) if isinstance(value, str) and value else value


def _date_cell(value: Any) -> Any:
    return date.fromisoformat(value) if isinstance(value, str) and value else value


_CELL: dict[str, Callable[[Any], Any]] = {"ts": _ts_cell, "date": _date_cell}


class XlsxBook:
    """A write-only workbook saved to `path`: `sheet(title, columns)`, `append(batch)`
    as often as needed, then `save()`."""

    def __init__(self, path: Path) -> None:
        from openpyxl import Workbook  # on first use: it takes ~0.1 s to import

        self.path = path
        self.book = Workbook(write_only=True)
        self.sheet_count: dict[str, int] = {}
        self._sheet: WriteOnlyWorksheet | None = None
        self._title = ""
        self._columns: list[Column] = []
        self._rows = 0
        self._convert: list[tuple[int, Callable[[Any], Any]]] = []

    def sheet(self, title: str, columns: Sequence[Column]) -> None:
        self._title = title[:XLSX_TITLE]
        self._columns = list(columns)
        self._convert = [(i, _CELL[c.kind]) for i, c in enumerate(columns) if c.kind in _CELL]
        self._open(self._title)

    def _open(self, title: str) -> None:
        self._sheet = self.book.create_sheet(title)
        self._sheet.append([c.name for c in self._columns])
        self._rows = 1
        self.sheet_count[self._title] = self.sheet_count.get(self._title, 0) + 1

    def append(self, batch: Sequence[Row]) -> None:
        assert self._sheet is not None, "sheet() first"
        convert = self._convert
        for row in batch:
            if self._rows >= XLSX_MAX_ROWS:
                n = self.sheet_count[self._title] + 1
                suffix = f" ({n})"
                self._open(self._title[: XLSX_TITLE - len(suffix)] + suffix)
            if convert:
                cells = list(row)
                for i, fn in convert:
                    cells[i] = fn(cells[i])
                self._sheet.append(cells)
            else:
                self._sheet.append(list(row))
            self._rows += 1

    def save(self) -> None:
        self.book.save(self.path)
