"""The one CSV writer and escaping rule of hashmatch.

Every CSV or TSV that hashmatch writes (``hashmatch hash --format csv``, hash-list
export, scan reports) goes through :class:`CsvWriter`, so one rule holds everywhere:

* Records end in CRLF and cells are quoted per RFC 4180 whenever they hold the
  delimiter, a quote, CR or LF. (Python's :mod:`csv` quotes only the characters of its
  line terminator: with ``"\\n"`` a bare CR went out unquoted and split the row.)
* A cell that a spreadsheet would run as a formula, one starting with ``=``, ``+``,
  ``-``, ``@``, tab or CR or their full-width forms (``＝`` …), gets one ``'`` in
  front. So does a cell that already starts with ``'``, which makes the rule
  reversible: :func:`unescape_cell` strips exactly one leading ``'`` and gives back
  the original text, for the formats hashmatch reads back (reports, hash lists).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import IO

__all__ = ["FORMULA_STARTS", "CsvWriter", "csv_line", "escape_cell", "unescape_cell"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20", "'")
"""Leading characters that get a ``'`` in front: spreadsheet formula starts (ASCII and
full-width) and the quote itself, so that unescaping is exact."""

LINE_END = "\r\n"


def escape_cell(value: object) -> str:
    """The text of a cell as written: None is empty; formula-like text gets a ``'``."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unescape_cell(text: str) -> str:
    """Undo :func:`escape_cell` (for a cell that hashmatch wrote)."""
    return text[1:] if text.startswith("'") else text


class CsvWriter:
    """Writes escaped rows to a text stream (opened with ``newline=""``)."""

    def __init__(self, stream: IO[str], *, delimiter: str = ",") -> None:
        self._stream = stream
        self._writer = csv.writer(stream, delimiter=delimiter, lineterminator=LINE_END)

    def writerow(self, cells: Iterable[object]) -> None:
        self._writer.writerow([escape_cell(c) for c in cells])

    def write_raw(self, cells: Iterable[str]) -> None:
        """Write cells as they are (already escaped, or fixed text such as a header)."""
        self._writer.writerow(list(cells))


def csv_line(cells: Iterable[str], *, delimiter: str = ",") -> str:
    """One record as text, cells as given (already escaped): what :class:`CsvWriter`
    writes for them, for checksums over a row's exact bytes."""
    buf = io.StringIO()
    CsvWriter(buf, delimiter=delimiter).write_raw(cells)
    return buf.getvalue()
