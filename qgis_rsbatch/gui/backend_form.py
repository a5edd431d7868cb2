"""The run step's "where": this computer (an output folder, parallel cells) or a deployed AWS
stack (its outputs file names the bucket and region; a profile *name* and a region, the
credentials staying in the AWS profile chain). One page per backend, the one chosen shown.

Owns the widgets and the settings they persist; says `changed` whenever what it would
submit to changes, so the run panel estimates again.
"""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import RsbatchError
from .backends import (
    aws_key,
    aws_profiles,
    boto3_missing,
    default_s3_output,
    list_stacks,
    read_stack,
)
from .context import Context

LOCAL, AWS = "local", "aws"


class BackendForm(QWidget):
    """Backend choice and its page of options."""

    #: what a submit would use changed (backend, folder, stack, …)
    changed = pyqtSignal()

    def __init__(self, context: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._default_s3 = ""
        self._build()
        self._restore()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.backend_combo = QComboBox(self)
        self.backend_combo.addItem(self.tr("This computer"), LOCAL)
        self.backend_combo.addItem(self.tr("AWS Batch (deployed stack)"), AWS)
        form.addRow(self.tr("Run on"), self.backend_combo)
        layout.addLayout(form)
        self.pages = QStackedWidget(self)
        self.pages.addWidget(self._local_page())
        self.pages.addWidget(self._aws_page())
        layout.addWidget(self.pages)

        self.backend_combo.currentIndexChanged.connect(self._backend_changed)
        self.stack_combo.currentTextChanged.connect(self._stack_changed)
        self.refresh_stacks_button.clicked.connect(self.refresh_stacks)
        self.folder_widget.fileChanged.connect(lambda _path: self.changed.emit())
        self.s3_edit.textChanged.connect(lambda _text: self.changed.emit())
        self.workers_spin.valueChanged.connect(lambda _value: self.changed.emit())

    def _local_page(self) -> QWidget:
        local = QWidget(self.pages)
        local_form = QFormLayout(local)
        local_form.setContentsMargins(0, 0, 0, 0)
        self.folder_widget = QgsFileWidget(local)
        self.folder_widget.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.folder_widget.setDialogTitle(self.tr("Folder for the results"))
        local_form.addRow(self.tr("Output folder"), self.folder_widget)
        self.workers_spin = QSpinBox(local)
        self.workers_spin.setRange(0, 64)
        self.workers_spin.setSpecialValueText(self.tr("one per core"))
        self.workers_spin.setToolTip(self.tr("Cells processed at the same time"))
        local_form.addRow(self.tr("Parallel cells"), self.workers_spin)
        return local

    def _aws_page(self) -> QWidget:
        aws = QWidget(self.pages)
        aws_form = QFormLayout(aws)
        aws_form.setContentsMargins(0, 0, 0, 0)
        stack_row = QHBoxLayout()
        self.stack_combo = QComboBox(aws)
        self.stack_combo.setEditable(True)
        self.stack_combo.setToolTip(self.tr("Stacks deployed from this computer with `make "
                                            "deploy`"))
        self.refresh_stacks_button = QToolButton(aws)
        self.refresh_stacks_button.setIcon(QgsApplication.getThemeIcon("/mActionRefresh.svg"))
        self.refresh_stacks_button.setToolTip(self.tr("Look for deployed stacks again"))
        stack_row.addWidget(self.stack_combo, 1)
        stack_row.addWidget(self.refresh_stacks_button)
        aws_form.addRow(self.tr("Stack"), stack_row)
        self.profile_combo = QComboBox(aws)
        self.profile_combo.setEditable(True)
        self.profile_combo.setToolTip(self.tr("An AWS profile name (credentials stay in your "
                                              "AWS configuration); empty: the default chain"))
        aws_form.addRow(self.tr("AWS profile"), self.profile_combo)
        self.region_edit = QLineEdit(aws)
        self.region_edit.setPlaceholderText(self.tr("the stack's region"))
        aws_form.addRow(self.tr("Region"), self.region_edit)
        self.s3_edit = QLineEdit(aws)
        self.s3_edit.setPlaceholderText("s3://bucket/prefix")
        aws_form.addRow(self.tr("Output"), self.s3_edit)
        self.aws_note = QLabel(aws)
        self.aws_note.setWordWrap(True)
        aws_form.addRow(self.aws_note)
        return aws

    def _restore(self) -> None:
        settings = self.context.settings()
        self.folder_widget.setFilePath(settings.output_folder)
        self.workers_spin.setValue(max(0, settings.workers))
        self.profile_combo.addItem("")
        self.profile_combo.addItems(aws_profiles())
        self.profile_combo.setEditText(settings.aws_profile)
        self.refresh_stacks()
        self.stack_combo.setEditText(settings.aws_stack)
        if settings.aws_region:
            self.region_edit.setText(settings.aws_region)
        if settings.aws_output:
            self.s3_edit.setText(settings.aws_output)
        index = self.backend_combo.findData(settings.backend)
        self.backend_combo.setCurrentIndex(max(0, index))
        self._backend_changed()

    def refresh_stacks(self) -> None:
        current = self.stack_combo.currentText()
        self.stack_combo.blockSignals(True)
        self.stack_combo.clear()
        self.stack_combo.addItems(list_stacks())
        self.stack_combo.setEditText(current)
        self.stack_combo.blockSignals(False)

    # --- backend ----------------------------------------------------------------------------
    def backend(self) -> str:
        return self.backend_combo.currentData() or LOCAL

    def set_backend(self, name: str) -> None:
        self.backend_combo.setCurrentIndex(max(0, self.backend_combo.findData(name)))

    def _backend_changed(self, *_args: Any) -> None:
        aws = self.backend() == AWS
        self.pages.setCurrentIndex(1 if aws else 0)
        # the stack is as tall as the page shown, not as its tallest page
        for index in range(self.pages.count()):
            policy = QSizePolicy.Policy.Preferred if index == self.pages.currentIndex() \
                else QSizePolicy.Policy.Ignored
            self.pages.widget(index).setSizePolicy(policy, policy)
        self.pages.adjustSize()
        if aws:
            self._stack_changed(self.stack_combo.currentText())
        self.changed.emit()

    def _stack_changed(self, stack: str) -> None:
        notes = []
        missing = boto3_missing()
        if missing:
            notes.append(missing)
        try:
            outputs = read_stack(stack.strip()) if stack.strip() else {}
        except RsbatchError as exc:
            outputs = {}
            notes.append(str(exc))
        self._default_s3 = default_s3_output(outputs)
        self.region_edit.setPlaceholderText(outputs.get("Region") or self.tr("the stack's region"))
        self.s3_edit.setPlaceholderText(self._default_s3 or "s3://bucket/prefix")
        self.aws_note.setText("\n".join(notes))
        self.aws_note.setVisible(bool(notes))
        self.changed.emit()

    def backend_key(self) -> Any:
        if self.backend() == AWS:
            return aws_key(stack=self.stack_combo.currentText().strip(),
                           region=self.region_edit.text().strip(),
                           profile=self.profile_combo.currentText().strip())
        return self.context.local_key()

    def backend_label(self) -> str:
        if self.backend() == AWS:
            region = self.region_edit.text().strip() or self.region_edit.placeholderText()
            return self.tr("AWS stack {} ({})").format(self.stack_combo.currentText().strip(),
                                                       region)
        return self.tr("this computer")

    def output(self) -> str:
        if self.backend() == AWS:
            return self.s3_edit.text().strip() or self._default_s3
        return self.folder_widget.filePath().strip()

    def workers(self) -> int:
        """Parallel cells on this computer (0: one per core)."""
        return self.workers_spin.value()

    def save(self) -> None:
        settings = self.context.settings()
        settings.backend = self.backend()
        settings.workers = self.workers_spin.value()
        if self.backend() == AWS:
            settings.aws_stack = self.stack_combo.currentText().strip()
            settings.aws_region = self.region_edit.text().strip()
            settings.aws_profile = self.profile_combo.currentText().strip()
            settings.aws_output = self.s3_edit.text().strip()
        else:
            settings.output_folder = self.folder_widget.filePath().strip()
