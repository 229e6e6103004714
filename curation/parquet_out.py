"""A Parquet file written a few Arrow batches at a time, in row groups of a chosen size."""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class InOrderThread:
    """Runs calls one after another on a thread of its own while the caller goes on.

    At most ``limit`` calls are queued or running: :meth:`submit` waits for the oldest
    beyond that. What a call raised is raised by a later :meth:`submit` or by :meth:`wait`.
    The thread starts at the first call (start worker processes by ``fork`` before that).
    """

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self._pool: ThreadPoolExecutor | None = None
        self._calls: collections.deque[Future] = collections.deque()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        while self._calls and (self._calls[0].done() or len(self._calls) >= self.limit):
            self._calls.popleft().result()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        self._calls.append(self._pool.submit(fn, *args))

    def wait(self) -> None:
        """Let every call finish; raises what the first failing one raised."""
        while self._calls:
            self._calls.popleft().result()

    def stop(self) -> None:
        """Drop the calls not started, let a running one finish (what it raises is dropped),
        and end the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._calls.clear()


class RowGroupWriter:
    """Buffers batches (or tables) and writes them as row groups of about ``rows_per_group``.

    Writing each small batch as it comes would make a row group of each: slow to write and,
    for a file that is read whole (the image sidecar), slow to read. The file is created at
    the first row group, or by :meth:`close` when nothing was written (a valid, empty file).
    ``options`` go to ``pyarrow.parquet.ParquetWriter``.

    ``background``: each row group is encoded and compressed on a thread of its own while
    the caller goes on (Arrow releases the GIL for it); at most one row group is in flight,
    and an error it met is raised by the next :meth:`write`, :meth:`flush` or :meth:`close`.
    Start worker processes by ``fork`` before the first row group, not after: the thread
    starts then.
    """

    def __init__(
        self, path: Any, schema: Any, rows_per_group: int, *, background: bool = False, **options: Any
    ) -> None:
        self.path = str(path)
        self.schema = schema
        self.rows_per_group = rows_per_group
        self.options = options
        self.writer: Any = None
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.count = 0  # rows accepted
        # one row group in flight: the next one waits for it
        self._thread = InOrderThread("parquet-out", 1) if background else None

    def write(self, parts: list[Any]) -> None:
        """Append record batches or tables (each with this file's columns)."""
        for part in parts:
            if part.num_rows:
                self.pending += part.to_batches() if hasattr(part, "to_batches") else [part]
                self.pending_rows += part.num_rows
                self.count += part.num_rows
        if self.pending_rows >= self.rows_per_group:
            self.flush()

    def _open(self) -> None:
        if self.writer is None:
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(self.path, self.schema, **self.options)

    def _write(self, table: Any) -> None:
        self._open()
        self.writer.write_table(table)

    def flush(self) -> None:
        import pyarrow as pa

        if not self.pending:
            if self._thread is not None:
                self._thread.wait()
            return
        table = pa.Table.from_batches(self.pending, schema=self.schema)
        self.pending, self.pending_rows = [], 0
        if self._thread is None:
            self._write(table)
        else:
            self._thread.submit(self._write, table)

    def close(self) -> None:
        try:
            self.flush()
            if self._thread is not None:
                self._thread.wait()
        finally:
            if self._thread is not None:
                self._thread.stop()
        self._open()
        self.writer.close()

    def abort(self) -> None:
        """Drop what is buffered and close the file as it is (the caller removes it)."""
        self.pending, self.pending_rows = [], 0
        if self._thread is not None:
            self._thread.stop()  # a row group in flight finishes; its error, if any, is moot
        if self.writer is not None:
            self.writer.close()
            self.writer = None
