"""Connect to a columnar engine and read a study's tables into it (the I/O edge).

Engines (through Ibis, one expression for all):

``duckdb`` (default)
    embedded, in-process, out of core: reads Parquet or CSV where it lies and spills to
    disk when a step outgrows memory (``temp_directory``);
``pyspark``
    Apache Spark, for data that lives in a warehouse or outgrows one machine; ``master``
    is the cluster's URL (``local[2]``: a local cluster of two worker threads, as in CI).

The tables are read from ``folder/<name>.parquet`` (or ``.csv``): typically the validated
tables of a run (``OUT/validated/``), which carry the contract's column types.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
from ibis.backends import BaseBackend

Engine = Literal["duckdb", "pyspark"]
ENGINES: tuple[Engine, ...] = ("duckdb", "pyspark")


@dataclass(frozen=True)
class Tables:
    """A study's tables on an engine: ``patients`` and ``sessions`` (Ibis tables)."""

    backend: BaseBackend
    patients: ir.Table
    sessions: ir.Table


def connect(engine: Engine = "duckdb", *, master: str = "local[2]",
            memory_limit: str | None = None, temp_directory: Path | None = None) -> BaseBackend:
    """An Ibis backend for ``engine``.

    Parameters
    ----------
    engine : {"duckdb", "pyspark"}
        The engine (module docstring).
    master : str
        Spark only: the cluster URL.
    memory_limit, temp_directory : optional
        DuckDB only: the memory it may hold (e.g. ``"8GB"``) before spilling to
        ``temp_directory``.
    """
    if engine == "duckdb":
        config: dict[str, Any] = {}
        if memory_limit is not None:
            config["memory_limit"] = memory_limit
        if temp_directory is not None:
            config["temp_directory"] = str(temp_directory)
        return ibis.duckdb.connect(**config)
    if engine == "pyspark":
        return ibis.pyspark.connect(spark_session(master))
    raise ValueError(f"engine: {engine!r}; use one of {', '.join(ENGINES)}")


def spark_session(master: str = "local[2]") -> Any:
    """A Spark session on ``master`` with UTC timestamps and no web UI."""
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(master).appName("ipt-outcomes")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "8")
            # pandas writes nanosecond timestamps, which Spark reads only as integers
            .config("spark.sql.legacy.parquet.nanosAsLong", "true")
            .getOrCreate())


def read_tables(backend: BaseBackend, folder: Path | str) -> Tables:
    """``patients`` and ``sessions`` from ``folder`` (Parquet where present, else CSV).

    A folder of Parquet parts (``folder/sessions/*.parquet``) is read as one table, so a
    registry written in pieces needs no concatenation. ``folder`` may also be a URL that
    the engine reads (``s3a://bucket/registry``, ``hdfs://...``): its ``patients`` and
    ``sessions`` are then Parquet datasets (a file or a folder of parts each).
    """
    return Tables(backend, _read(backend, folder, "patients"), _read(backend, folder, "sessions"))


#: Columns of the contract by type (scores and other numbers are named by the caller).
TEXT_COLUMNS = ("patient_id", "site_id", "therapist_id", "group_id", "condition", "format",
                "problem_area", "secondary_problem_area", "end_reason", "sex", "arm",
                "employment", "attendance")
DATE_COLUMNS = ("referral_date", "start_date", "end_date", "session_date")
RAW_PREFIX = "__raw_"


def typed(table: ir.Table, numbers: Collection[str]) -> ir.Table:
    """``table`` with the contract's types (text, timestamps, and float for ``numbers``).

    A CSV read by the engine gets inferred types (an empty score column is text, a date
    may be text); each column whose type differs is converted with ``try_cast`` and its
    value as read is kept as ``__raw_<name>``, so that a value that did not convert is
    counted by :mod:`pipeline.columnar.checks` (rule ``dtype(<name>)``), never dropped.
    """
    wanted = {**{c: "string" for c in TEXT_COLUMNS}, **{c: "timestamp" for c in DATE_COLUMNS},
              **{c: "float64" for c in numbers}}
    changes: dict[str, ir.Value] = {}
    for name, kind in table.schema().items():
        target = wanted.get(name)
        if target is None or kind == ibis.dtype(target):
            continue
        changes[name] = table[name].try_cast(target)
        changes[f"{RAW_PREFIX}{name}"] = table[name]
    return table.mutate(**changes) if changes else table


def typed_tables(tables: Tables, numbers: Collection[str]) -> Tables:
    """:func:`typed` on both tables (``numbers``: the score columns, session_number, age)."""
    return Tables(tables.backend, typed(tables.patients, numbers),
                  typed(tables.sessions, numbers))


def is_url(folder: Path | str) -> bool:
    """Whether ``folder`` names storage the engine reads itself (``scheme://...``)."""
    return isinstance(folder, str) and "://" in folder


def _read(backend: BaseBackend, folder: Path | str, name: str) -> ir.Table:
    if is_url(folder):
        url = f"{str(folder).rstrip('/')}/{name}"
        return _dates_as_timestamps(backend.read_parquet(url, table_name=name))
    folder = Path(folder)
    parts, parquet, csv = folder / name, folder / f"{name}.parquet", folder / f"{name}.csv"
    if parts.is_dir():
        table = backend.read_parquet(str(parts / "*.parquet"), table_name=name)
    elif parquet.exists():
        table = backend.read_parquet(str(parquet), table_name=name)
    elif csv.exists():
        table = backend.read_csv(str(csv), table_name=name)
    else:
        raise FileNotFoundError(f"{folder}: no {name}.parquet, {name}/ or {name}.csv")
    return _dates_as_timestamps(table)


def _dates_as_timestamps(table: ir.Table) -> ir.Table:
    """Date columns (``*_date``) read as nanosecond integers (Spark) become timestamps (to
    the second: Spark makes timestamps from whole seconds; the contract's dates are days)."""
    nanos = {name: (table[name] // 1_000_000_000).as_timestamp("s")
             for name, kind in table.schema().items()
             if name.endswith("_date") and kind.is_integer()}
    return table.mutate(**nanos) if nanos else table
