"""Parquet files read by the loaders: what cannot be read is a `DataError` naming the place.

A 0-byte, truncated or foreign file fails at its footer (the file is named); a row group whose
pages are damaged fails when read, and is then found by reading each row group and column alone
(named by row group and column). Values are checked by ``validate.coerce`` (rows are named by
their 1-based position in the file).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hydrarec.data.coerce import Dtype, Source, coerce
from hydrarec.data.delimited import require_columns
from hydrarec.data.reading import reading
from hydrarec.errors import DataError
from hydrarec.io.progress import Bar, Progress

_ERRORS = (pa.ArrowException, OSError, ValueError)  # ArrowInvalid is also a ValueError
BATCH_ROWS = 1 << 16  # rows a progress step


def read_parquet(
    path: str | Path,
    fields: Mapping[str, Dtype],
    *,
    nullable: Iterable[str] = (),
    optional: Iterable[str] = (),
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, Source]:
    """The columns ``fields`` (name -> dtype) of a Parquet file, checked like a text file's; a
    read that lasts shows the rows read (``data.reading``)."""
    path = Path(path)
    src = Source(path)
    if not path.is_file():
        raise DataError("file not found", file=path, expected="an existing file")
    try:
        file = pq.ParquetFile(path)
        present = list(file.schema_arrow.names)
    except _ERRORS as e:
        raise DataError(
            f"not a readable Parquet file ({e})", file=path,
            expected="a complete Parquet file (it ends in a footer and the bytes 'PAR1')",
        ) from None  # fmt: skip
    require_columns(src, fields, present, optional)
    use = [c for c in fields if c in present]
    try:
        with reading(path, file.metadata.num_rows, "rows", progress) as bar:
            df = _read_batches(file, use, bar)
    except _ERRORS as e:
        raise _damaged(file, path, use, e) from None
    if len(df) == 0:
        raise DataError(
            "no rows", file=path, field=use[0] if use else None, expected="at least one row"
        )
    return coerce(df, {c: fields[c] for c in use}, src, nullable), src


def _read_batches(file: pq.ParquetFile, columns: list[str], bar: Bar) -> pd.DataFrame:
    """``columns`` read in batches of ``BATCH_ROWS`` rows, each advancing ``bar`` (measured as
    fast as one ``read`` of the file, issue 22)."""
    batches = []
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=columns):
        batches.append(batch)
        bar.advance(n=batch.num_rows)
    if not batches:  # no rows: the columns, empty
        return file.read(columns=columns).to_pandas()
    return pa.Table.from_batches(batches).to_pandas()


def _damaged(file: pq.ParquetFile, path: Path, columns: list[str], error: Exception) -> DataError:
    """The first row group and column that cannot be read (error path only)."""
    for group in range(file.num_row_groups):
        for column in columns:
            try:
                file.read_row_group(group, columns=[column]).to_pandas()
            except _ERRORS as e:
                return DataError(
                    f"row group {group + 1} of {file.num_row_groups} cannot be read ({e})",
                    file=path, field=column, expected="a complete Parquet file",
                )  # fmt: skip
    return DataError(f"cannot be read ({error})", file=path, expected="a complete Parquet file")
