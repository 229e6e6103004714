"""A Parquet file written a few Arrow batches at a time, in row groups of a chosen size."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


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
        self.background = background
        self._thread: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None

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

    def _wait(self) -> None:
        """Let the row group in flight finish; raises what it raised."""
        if self._in_flight is not None:
            done, self._in_flight = self._in_flight, None
            done.result()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.pending:
            self._wait()
            return
        table = pa.Table.from_batches(self.pending, schema=self.schema)
        self.pending, self.pending_rows = [], 0
        if not self.background:
            self._write(table)
            return
        self._wait()
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="parquet-out")
        self._in_flight = self._thread.submit(self._write, table)

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    def close(self) -> None:
        try:
            self.flush()
            self._wait()
        finally:
            self._stop_thread()
        self._open()
        self.writer.close()

    def abort(self) -> None:
        """Drop what is buffered and close the file as it is (the caller removes it)."""
        self.pending, self.pending_rows = [], 0
        in_flight, self._in_flight = self._in_flight, None
        self._stop_thread()  # waits for a row group in flight; its error, if any, is moot
        del in_flight
        if self.writer is not None:
            self.writer.close()
            self.writer = None
