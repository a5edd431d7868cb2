"""A cell's worker log in the dock: right-click a cell ▸ Show log.

The same text as `rsbatch logs JOB_ID CELL_ID`: the local cell's log file beside its outputs,
or on AWS the CloudWatch stream of the cell's Batch job. Reading it may take CloudWatch
requests, so it happens in a task; the dialog opens at once and fills when the text arrives.
"""

from __future__ import annotations

from typing import Any

from qgis.PyQt.QtGui import QFontDatabase, QTextCursor
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import InvalidInput
from ..tasks import FunctionTask
from .messages import describe


def read_log(pool: Any, registry: Any, key: Any, job_id: str, cell_id: str) -> str:
    """The cell's whole log (blocking: call it in a task). `registry` is the machine's job
    registry (the local task log, which records every job and the backend that ran it)."""
    from ..core.cell_logs import read_cell_log

    found = pool.get(registry).log.load_job(job_id)
    if found is None:
        raise InvalidInput(f"job {job_id} is not in this machine's job history any more")
    return read_cell_log(pool.get(key), found[0], cell_id)


class CellLogDialog(QDialog):
    """The log of one cell, read in a task; Refresh reads it again (a running cell grows)."""

    def __init__(self, context: Any, key: Any, job_id: str, cell_id: str,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context, self.key, self.job_id, self.cell_id = context, key, job_id, cell_id
        self.task: Any = None
        self.setWindowTitle(self.tr("rsbatch: log of {} (job {})").format(cell_id, job_id))
        self.resize(760, 480)
        layout = QVBoxLayout(self)
        self.state = QLabel(self)
        layout.addWidget(self.state)
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.refresh_button = QPushButton(self.tr("Refresh"), self)
        buttons.addButton(self.refresh_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        self.refresh_button.clicked.connect(self.refresh)
        layout.addWidget(buttons)
        self.refresh()

    def refresh(self) -> Any:
        """Read the log again, in a task."""
        if self.task is not None:
            return self.task
        self.refresh_button.setEnabled(False)
        self.state.setText(self.tr("Reading the log…"))
        pool, registry, key = self.context.pool, self.context.local_key(), self.key
        job_id, cell_id = self.job_id, self.cell_id
        self.task = FunctionTask(
            self.tr("rsbatch: reading the log of {}").format(cell_id),
            lambda task: read_log(pool, registry, key, job_id, cell_id),
            on_success=self._shown, on_error=self._failed)
        return self.context.tasks.start(self.task)

    def _shown(self, text: str) -> None:
        self.task = None
        self.refresh_button.setEnabled(True)
        lines = text.count("\n")
        self.state.setText(self.tr("{} line(s)").format(lines))
        self.text.setPlainText(text)
        self.text.moveCursor(QTextCursor.MoveOperation.End)  # the newest lines, where it ended

    def _failed(self, error: BaseException) -> None:
        self.task = None
        self.refresh_button.setEnabled(True)
        self.state.setText(self.tr("The log could not be read"))
        self.text.setPlainText(describe(error))
