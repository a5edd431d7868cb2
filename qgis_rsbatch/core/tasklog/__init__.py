"""Task-log stores with one interface: SQLite locally, DynamoDB on AWS.

`open_task_log(uri)` is how a worker finds its store from one string it is given:
`sqlite:///abs/path/tasklog.db` or `dynamodb://task-log?region=eu-west-1`.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlparse

from ..errors import InvalidInput
from .schema import TABLE_NAME, Record, TaskLog

__all__ = ["Record", "TaskLog", "default_sqlite_path", "open_task_log", "user_data_dir"]


def user_data_dir() -> str:
    """Where rsbatch keeps its local task log: $RSBATCH_HOME, else the OS's user data folder."""
    if os.environ.get("RSBATCH_HOME"):
        return os.path.abspath(os.path.expanduser(os.environ["RSBATCH_HOME"]))
    if os.name == "nt":
        return os.path.join(os.environ.get("APPDATA", os.path.expanduser("~")), "rsbatch")
    if os.uname().sysname == "Darwin":
        return os.path.expanduser("~/Library/Application Support/rsbatch")
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return os.path.join(base, "rsbatch")


def default_sqlite_path() -> str:
    return os.path.join(user_data_dir(), "tasklog.sqlite")


def open_task_log(uri: str | None = None):
    """Open the store a URI names; None → the local SQLite file in the user data folder."""
    if not uri:
        from .sqlite import SqliteTaskLog

        return SqliteTaskLog(default_sqlite_path())
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        from .sqlite import SqliteTaskLog

        return SqliteTaskLog(parsed.netloc + parsed.path if parsed.netloc else parsed.path)
    if parsed.scheme == "dynamodb":
        from .dynamodb import DynamoTaskLog

        query = {key: values[0] for key, values in parse_qs(parsed.query).items() if values}
        return DynamoTaskLog(parsed.netloc or TABLE_NAME, region=query.get("region"),
                             endpoint_url=query.get("endpoint_url"))
    raise InvalidInput(
        f"task log '{uri}' is not understood: use sqlite:///path or dynamodb://table?region=…"
    )
