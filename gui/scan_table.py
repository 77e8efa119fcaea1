"""A scan's table — positions and readings per point, as the run file's ``/entry/scan`` has
them — viewed in a window and exported to CSV.

The daemon sends it as Arrow (``scan_table``: a ``pyarrow.Table``, units in each field's
metadata). The view is a Qt model over the table's columns as numpy arrays: Qt asks only for
the rows in sight, so a 10⁶-point table opens at once. CSV is written by pyarrow (fast, exact
round-trip of doubles) on a worker thread; the header gives each column's units in brackets
(``esp300.axis1 [mm]``).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from .widgets import ErrorLabel, button, muted

log = logging.getLogger("gui.actions")

Index = QModelIndex | QPersistentModelIndex


def units(table: pa.Table) -> dict[str, str]:
    found = {}
    for column in table.schema:
        metadata = column.metadata or {}
        unit = metadata.get(b"units", b"").decode("utf-8", "replace")
        if unit:
            found[column.name] = unit
    return found


def headed(table: pa.Table) -> pa.Table:
    """The table with "name [units]" column names (for CSV)."""
    known = units(table)
    names = [f"{n} [{known[n]}]" if n in known else n for n in table.column_names]
    return table.rename_columns(names)


def export_csv(table: pa.Table, path: Path) -> Path:
    """Write ``table`` as CSV (header "name [units]"); to a temporary name first, so a failed
    export never leaves half a file under the name asked for."""
    partial = path.with_name(path.name + ".partial")
    try:
        pa_csv.write_csv(headed(table), str(partial))
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


class ArrowModel(QAbstractTableModel):
    def __init__(self, table: pa.Table) -> None:
        super().__init__()
        self.table = table
        self.units = units(table)
        self.columns = [np.asarray(c.to_numpy(zero_copy_only=False)) for c in table.columns]

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.table.num_rows

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else self.table.num_columns

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role != Qt.ItemDataRole.DisplayRole or not index.isValid():
            return None
        value = self.columns[index.column()][index.row()]
        if isinstance(value, float | np.floating):
            return "NaN" if math.isnan(value) else f"{value:.6g}"
        return str(value)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Vertical:
            return str(section)
        name = self.table.column_names[section]
        return f"{name}\n[{self.units[name]}]" if name in self.units else name


class ScanTableDialog(QDialog):
    """One scan's table, with **Export CSV…**."""

    def __init__(
        self,
        parent: QWidget | None,
        scan_id: str,
        table: pa.Table,
        run_path: str,
        post: Callable[[Callable[[], None]], None],
    ) -> None:
        super().__init__(parent)
        self.scan_id, self.table = scan_id, table
        self._post = post
        self.setWindowTitle(f"Scan {scan_id}: table")
        self.resize(900, 560)
        self.model = ArrowModel(table)
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setAlternatingRowColors(True)
        self.view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.view.horizontalHeader().setDefaultSectionSize(120)
        self.view.verticalHeader().setDefaultSectionSize(20)
        about = muted(
            f"{table.num_rows:,} rows × {table.num_columns} columns · run file {run_path or '—'}"
        )
        about.setWordWrap(True)
        self.export = button("Export CSV…", "primary", "Save this table as a CSV file")
        self.export.clicked.connect(self._ask_export)
        close = button("Close")
        close.clicked.connect(self.close)
        self.error = ErrorLabel()
        self.done_note = muted("")
        bar = QHBoxLayout()
        bar.addWidget(about, 1)
        bar.addWidget(self.export)
        bar.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.done_note)
        layout.addWidget(self.error)
        layout.addLayout(bar)

    def _ask_export(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self, "Export the scan's table", f"scan-{self.scan_id}.csv", "CSV (*.csv)"
        )
        if name:
            self.export_to(Path(name))

    def export_to(self, path: Path) -> None:
        """Write in a thread; the result shows under the table."""
        self.export.setEnabled(False)
        self.error.clear_error()
        self.done_note.setText(f"writing {path}…")
        table = self.table

        def finished(text: str, ok: bool) -> None:
            self.export.setEnabled(True)
            if ok:
                self.done_note.setText(text)
                log.info("%s", text)
            else:
                self.done_note.setText("")
                self.error.show_error(text)
                log.warning("%s", text)

        def work() -> None:
            try:
                export_csv(table, path)
            except Exception as error:  # shown to the user, whatever it is
                message = f"export failed: {type(error).__name__}: {error}"
                self._post(lambda: finished(message, False))
            else:
                message = f"exported {table.num_rows:,} rows to {path}"
                self._post(lambda: finished(message, True))

        threading.Thread(target=work, name="benchd-gui-export", daemon=True).start()
