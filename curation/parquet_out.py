"""A Parquet file written a few Arrow batches at a time, in row groups of a chosen size."""

from __future__ import annotations

from typing import Any


class RowGroupWriter:
    """Buffers batches (or tables) and writes them as row groups of about ``rows_per_group``.

    Writing each small batch as it comes would make a row group of each: slow to write and,
    for a file that is read whole (the image sidecar), slow to read. The file is created at
    the first row group, or by :meth:`close` when nothing was written (a valid, empty file).
    ``options`` go to ``pyarrow.parquet.ParquetWriter``.
    """

    def __init__(self, path: Any, schema: Any, rows_per_group: int, **options: Any) -> None:
        self.path = str(path)
        self.schema = schema
        self.rows_per_group = rows_per_group
        self.options = options
        self.writer: Any = None
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.count = 0  # rows accepted

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

    def flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            self._open()
            self.writer.write_table(pa.Table.from_batches(self.pending, schema=self.schema))
            self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        self.flush()
        self._open()
        self.writer.close()

    def abort(self) -> None:
        """Drop what is buffered and close the file as it is (the caller removes it)."""
        self.pending, self.pending_rows = [], 0
        if self.writer is not None:
            self.writer.close()
            self.writer = None
