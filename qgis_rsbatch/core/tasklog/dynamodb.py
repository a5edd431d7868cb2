"""The AWS task log: DynamoDB table `task-log` (hash key TaskID, GSI on JobId).

Every write is conditional and its outcome checked (cirrus-geo #202: writes that looked
successful were not). boto3 is imported lazily and clients are made per store, never at
module level, so the Lambda, the worker and tests pick up their own credentials.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from ..contract import Cell, ReduceUnit, Status
from ..errors import (
    AWS_DENIED_CODES,
    AccessDenied,
    SourceUnavailable,
    TransitionRejected,
    aws_error_code,
    require,
)
from .base import CompareAndSetLog
from .schema import HASH_KEY, JOB_INDEX, JOB_INDEX_KEY, TABLE_NAME, Record, job_shards

#: what counting a job's cells needs from each record (a projected Query reads only these)
STATUS_ATTRIBUTES = (HASH_KEY, "CellId", "Status", "Attempts", "UpdatedAt", "Error")
#: BatchGetItem's limit per request
_BATCH_GET = 100
_UNPROCESSED_RETRIES = 10
#: writers used to end many records at once (each a conditional PutItem)
_WRITERS = 8


def _plain(value: Any) -> Any:
    """DynamoDB returns numbers as Decimal; records want ints and floats."""
    if isinstance(value, Decimal):
        return int(value) if value == int(value) else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _numbers(value: Any) -> Any:
    """Floats as Decimal (DynamoDB takes no float); a non-finite float as None (no NaN)."""
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


class DynamoTaskLog(CompareAndSetLog):
    """Task log in a DynamoDB table."""

    def __init__(self, table: str = TABLE_NAME, *, region: str | None = None,
                 endpoint_url: str | None = None, session: Any = None) -> None:
        boto3 = require("boto3", "the DynamoDB task log")
        from botocore.config import Config

        session = session or boto3.session.Session(region_name=region)
        self.table_name = table
        # adaptive retry: throttling (a hot partition, a burst of 10,000 writes) slows the
        # client down with jittered backoff instead of failing the call
        config = Config(retries={"mode": "adaptive", "max_attempts": 10},
                        max_pool_connections=2 * _WRITERS)
        self._table = session.resource("dynamodb", endpoint_url=endpoint_url,
                                       config=config).Table(table)
        self._errors = session.client("dynamodb", endpoint_url=endpoint_url).exceptions

    @property
    def uri(self) -> str:
        region = self._table.meta.client.meta.region_name
        return f"dynamodb://{self.table_name}?region={region}"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = aws_error_code(exc)
            if code == "ConditionalCheckFailedException":
                return None
            if code in AWS_DENIED_CODES:
                raise AccessDenied(
                    f"DynamoDB {what} on table '{self.table_name}' was denied ({code}): "
                    "check the AWS profile or role and that its credentials have not expired"
                ) from exc
            if code == "ResourceNotFoundException":
                raise SourceUnavailable(
                    f"DynamoDB table '{self.table_name}' does not exist in region "
                    f"{self._table.meta.client.meta.region_name}: is the stack deployed?"
                ) from exc
            raise SourceUnavailable(f"DynamoDB {what} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise SourceUnavailable(f"DynamoDB {what} failed: {exc}") from exc

    def get(self, task_id: str) -> Record | None:
        response = self._call("get", self._table.get_item, Key={HASH_KEY: task_id},
                              ConsistentRead=True)
        item = response.get("Item") if response else None
        return Record.from_item(_plain(item)) if item else None

    def _query(self, job_id: str, attributes: Iterable[str] = ()) -> Iterator[dict]:
        """The job's items from its index: every shard at once, each page by page.

        `attributes`: only these (a ProjectionExpression), for readers that count.
        """
        wanted = list(attributes)
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            pages = pool.map(lambda shard: list(self._query_shard(shard, wanted)),
                             job_shards(job_id))
            for items in pages:
                yield from items

    def _query_shard(self, shard: str, wanted: list[str]) -> Iterator[dict]:
        names = {"#j": JOB_INDEX_KEY}
        kwargs: dict[str, Any] = {
            "IndexName": JOB_INDEX,
            "KeyConditionExpression": "#j = :j",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":j": shard},
        }
        if wanted:
            names.update({f"#p{i}": name for i, name in enumerate(wanted)})
            kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(wanted)))
        while True:
            page = self._call("query", self._table.query, **kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def job_records(self, job_id: str) -> list[Record]:
        records = [Record.from_item(_plain(item)) for item in self._query(job_id)]
        return sorted(records, key=lambda record: record.cell_id)

    def job_statuses(self, job_id: str) -> list[dict[str, Any]]:
        """Every record of a job with only STATUS_ATTRIBUTES (a fraction of the bytes)."""
        return [_plain(item) for item in self._query(job_id, STATUS_ATTRIBUTES)]

    def get_many(self, task_ids: Iterable[str]) -> dict[str, Record]:
        """Records by task id, read consistently in batches of 100 (BatchGetItem)."""
        ids = list(dict.fromkeys(task_ids))
        found: dict[str, Record] = {}
        # the resource's client (de)serialises plain Python values, as the Table does
        client = self._table.meta.client
        for start in range(0, len(ids), _BATCH_GET):
            request: dict[str, Any] = {self.table_name: {
                "Keys": [{HASH_KEY: task_id} for task_id in ids[start:start + _BATCH_GET]],
                "ConsistentRead": True}}
            for attempt in range(_UNPROCESSED_RETRIES):
                if attempt:  # throttled keys come back unprocessed: back off with jitter
                    time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))  # noqa: S311
                page = self._call("batch get", client.batch_get_item, RequestItems=request)
                for item in page.get("Responses", {}).get(self.table_name, []):
                    record = Record.from_item(_plain(item))
                    found[record.task_id] = record
                request = page.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise SourceUnavailable(f"DynamoDB kept throttling reads of table "
                                        f"'{self.table_name}'; try again in a minute")
        return found

    def register(self, cells: Iterable[Cell | ReduceUnit], status: Status = Status.PENDING,
                 expires_at: int | None = None) -> int:
        """Create a record per cell unless one exists: conditional puts on a few threads.

        Conditional, so a retried plan never resets a record (BatchWriteItem cannot be);
        the index key is spread over shards, so the threads do not meet on one partition;
        throttling slows the client (adaptive retries with jitter) instead of failing.
        """
        records = [Record.for_task(cell, status, expires_at) for cell in cells]
        if len(records) <= _WRITERS:
            return sum(self._insert(record) for record in records)
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            return sum(pool.map(self._insert, records))

    def end_many(self, records: Iterable[Record], status: Status, error: str) -> list[Record]:
        """Move every unfinished record to `status` (FAILED/CANCELLED) with `error`.

        Each is a conditional PutItem against the record as given (one write, no read);
        a record that changed meanwhile is read again and moved through `transition`,
        and one that has finished meanwhile is left alone. Writes run on a few threads
        (boto3 clients are thread-safe), so 10,000 cells take seconds, not minutes.
        Returns the records this call moved.
        """
        def end(record: Record) -> Record | None:
            if record.status.finished:
                return None
            new = record.moved(status, error=error)
            if self._replace(record, new):
                return new
            try:
                return self.transition(record.task_id, status, error=error)
            except TransitionRejected:  # it finished (or vanished) in the meantime
                return None

        todo = [record for record in records if not record.status.finished]
        with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
            return [moved for moved in pool.map(end, todo) if moved is not None]

    def _insert(self, record: Record) -> bool:
        response = self._call(
            "put", self._table.put_item, Item=_numbers(record.to_item()),
            ConditionExpression="attribute_not_exists(#k)",
            ExpressionAttributeNames={"#k": HASH_KEY},
        )
        return response is not None

    def _replace(self, old: Record, new: Record) -> bool:
        response = self._call(
            "put", self._table.put_item, Item=_numbers(new.to_item()),
            ConditionExpression="#s = :s AND #u = :u AND #a = :a",
            ExpressionAttributeNames={"#s": "Status", "#u": "UpdatedAt", "#a": "Attempts"},
            ExpressionAttributeValues={":s": old.status.value, ":u": old.updated_at,
                                       ":a": old.attempts},
        )
        return response is not None
