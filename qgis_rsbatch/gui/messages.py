"""How the plugin speaks: QGIS's message bar for the user, QgsMessageLog (tag "rsbatch") for
the record. Never a traceback dialog: errors arrive here as one sentence a person can act
on (core's error messages are written that way); details go to the log only.
"""

from __future__ import annotations

import re
from typing import Any

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtCore import QCoreApplication

from ..tasks import LOG_TAG

INFO = Qgis.MessageLevel.Info
WARNING = Qgis.MessageLevel.Warning
CRITICAL = Qgis.MessageLevel.Critical
SUCCESS = Qgis.MessageLevel.Success


def tr(text: str) -> str:
    return QCoreApplication.translate("rsbatch", text)


def log(message: str, level: Any = INFO) -> None:
    """One line in the rsbatch tab of QGIS's log messages panel."""
    QgsMessageLog.logMessage(message, LOG_TAG, level)


def plain_text(html: str) -> str:
    """The dock's short HTML (<b>, <br>, <span>) as plain text, for a question box."""
    return re.sub(r"<[^>]+>", "", html.replace("<br>", "\n"))


def describe(error: BaseException) -> str:
    """The sentence to show for an error: core errors' own text, else type and message."""
    from ..core.errors import RsbatchError

    text = str(error).strip()
    if isinstance(error, RsbatchError) and text:
        return text
    name = type(error).__name__
    return f"{name}: {text}" if text else name


class Notifier:
    """Message-bar notices that are also logged; works without a message bar (Processing)."""

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface

    def _bar(self) -> Any:
        if self.iface is None:
            return None
        try:
            return self.iface.messageBar()
        except (AttributeError, RuntimeError):
            return None

    def push(self, title: str, text: str, level: Any = INFO, duration: int = 6) -> None:
        log(f"{title}: {text}", level)
        bar = self._bar()
        if bar is not None:
            bar.pushMessage(title, text, level, duration)

    def info(self, text: str, title: str | None = None) -> None:
        self.push(title or "rsbatch", text, INFO, 5)

    def success(self, text: str, title: str | None = None) -> None:
        self.push(title or "rsbatch", text, SUCCESS, 8)

    def warning(self, text: str, title: str | None = None) -> None:
        self.push(title or "rsbatch", text, WARNING, 12)

    def error(self, error: BaseException | str, title: str | None = None) -> None:
        text = error if isinstance(error, str) else describe(error)
        self.push(title or "rsbatch", text, CRITICAL, 0)
