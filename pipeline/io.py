"""Reading a study folder and writing results: the only module (with ``report``) that
touches the disk.

A study folder (DATA_DIR) holds one file per table, ``NAME.csv`` or ``NAME.parquet``.
CSV files are read as text, exactly as written, so that the validator can quote the
original value of a faulty cell and the quarantine can hold the rejected row unchanged.
Every row keeps its source line number (1-based, the header is line 1) as the index; for
Parquet files the index is the 1-based row number.
"""

from __future__ import annotations

import contextlib
import csv
import filecmp
import functools
import hashlib
import io
import json
import logging
import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

DELIMITERS = (",", ";", "\t")


class InputError(Exception):
    """The input cannot be used at all (exit code 2): missing file, empty, bad encoding."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class RawTable:
    """One input table as read, before any cleaning.

    Attributes
    ----------
    name : str
        Table name (``patients``, ``sessions``, ``followups``).
    path : Path
        File it was read from.
    frame : pandas.DataFrame
        Cells as text for CSV (empty cells are ``""``), native types for Parquet; the index is
        the source line (CSV) or row number (Parquet).
    blank_lines : int
        Blank lines skipped in a CSV file (they hold no record).
    """

    name: str
    path: Path
    frame: pd.DataFrame
    blank_lines: int = 0


def find_table(data_dir: Path, name: str) -> Path | None:
    """Return the file holding table ``name`` in ``data_dir``, or None when absent."""
    found = [p for p in (data_dir / f"{name}.csv", data_dir / f"{name}.parquet") if p.exists()]
    if len(found) > 1:
        raise InputError(data_dir, f"both {name}.csv and {name}.parquet exist; keep one")
    return found[0] if found else None


def read_table(path: Path, name: str) -> RawTable:
    """Read one table file (CSV or Parquet) without changing any value."""
    if not path.exists():
        raise InputError(path, "file not found")
    if not path.is_file():
        raise InputError(path, "not a file")
    if path.suffix == ".parquet":
        return _read_parquet(path, name)
    return _read_csv(path, name)


def _check_unique_columns(path: Path, columns: list[str]) -> None:
    """Two columns whose names differ only by case or surrounding spaces (``phq9`` and
    `` PHQ9 ``) are one column given twice: which one holds the data cannot be told."""
    seen: dict[str, str] = {}
    for column in columns:
        key = str(column).strip().lower()
        if key in seen:
            raise InputError(path, f"columns {seen[key]!r} and {column!r} are the same column "
                             "(names differ only by case or spaces); keep one")
        seen[key] = column


def _read_parquet(path: Path, name: str) -> RawTable:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(path, f"not a readable Parquet file ({exc})") from exc
    if len(frame.columns) == 0:
        raise InputError(path, "the file has no columns")
    _check_unique_columns(path, [str(c) for c in frame.columns])
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="line")
    if frame.empty:
        raise InputError(path, "the file has no data rows")
    return RawTable(name, path, frame)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise InputError(path, "the file is empty")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            path,
            f"not UTF-8 text (undecodable byte at position {exc.start}); "
            "save the file as UTF-8 (CSV UTF-8 in Excel) and try again",
        ) from exc


def detect_delimiter(header_line: str) -> str:
    """Pick the delimiter (``,``, ``;`` or tab) that splits the header into most fields."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_csv(path: Path, name: str) -> RawTable:
    text = _decode(path)
    header_line = text.splitlines()[0]
    delimiter = detect_delimiter(header_line)
    # the header as written (pandas renames an exact repeat to ``name.1``); a header that
    # the csv module cannot split is left to pandas, which reports it
    with contextlib.suppress(csv.Error):
        _check_unique_columns(path, next(csv.reader([header_line], delimiter=delimiter)))
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(path, f"not a readable CSV file ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    lines = _record_lines(text, delimiter, len(frame))
    frame.index = pd.Index(lines, name="line")
    blank = (frame == "").all(axis=1) if len(frame.columns) > 1 else frame.iloc[:, 0].eq("")
    blank_lines = int(blank.sum())
    frame = frame.loc[~blank]
    if frame.empty:
        raise InputError(path, "the file has a header but no data rows")
    return RawTable(name, path, frame, blank_lines)


def _record_lines(text: str, delimiter: str, n_records: int) -> list[int]:
    """Source line on which each record starts (header = line 1).

    Quoted fields may span lines, so the line numbers are counted by the csv module
    whenever a line break appears inside quotes; otherwise record ``i`` is on line ``i + 2``.
    """
    if '"' not in text:
        return list(range(2, n_records + 2))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    starts: list[int] = []
    previous_end = 0
    # no field is longer than the file: lift the csv module's 131072-character limit
    default_limit = csv.field_size_limit(max(len(text), csv.field_size_limit()))
    try:
        for _row in reader:
            starts.append(previous_end + 1)
            previous_end = reader.line_num
    finally:
        csv.field_size_limit(default_limit)
    return starts[1 : n_records + 1]


def read_study(data_dir: Path, names: tuple[str, ...], required: tuple[str, ...]) -> dict[
    str, RawTable
]:
    """Read the tables of a study folder; a missing required table is an ``InputError``."""
    if not data_dir.is_dir():
        raise InputError(data_dir, "not a folder")
    tables: dict[str, RawTable] = {}
    for name in names:
        path = find_table(data_dir, name)
        if path is None:
            if name in required:
                raise InputError(data_dir, f"required table '{name}' (.csv or .parquet) not found")
            continue
        tables[name] = read_table(path, name)
        log.info("read %s: %d rows from %s", name, len(tables[name].frame), path.name)
    return tables


KEY_ENV = "IPT_PSEUDONYM_KEY"
KEY_FILE_ENV = "IPT_PSEUDONYM_KEY_FILE"
DEFAULT_KEY_FILE = Path.home() / ".config" / "ipt-outcomes" / "pseudonym.key"


MIN_KEY_BYTES = 16  # 128 bits: HMAC keys shorter than this can be guessed
MAKE_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'


def _key_from_hex(text: str, source: str) -> bytes:
    """The key bytes of hex ``text``; refused unless hex and at least 128 bits long."""
    how = f"make one with: {MAKE_KEY}"
    try:
        key = bytes.fromhex(text)
    except ValueError as exc:
        raise InputError(source, f"the pseudonymisation key must be hex digits; {how}") \
            from exc
    if len(key) < MIN_KEY_BYTES:
        raise InputError(source, f"the pseudonymisation key is too short ({len(key) * 8} "
                                 f"bits); it needs at least {MIN_KEY_BYTES * 8} bits "
                                 f"({MIN_KEY_BYTES * 2} hex digits); {how}")
    return key


def load_or_create_key(out_dir: Path | None = None) -> bytes:
    """The pseudonymisation key: ``$IPT_PSEUDONYM_KEY`` (hex), else the key file
    (``$IPT_PSEUDONYM_KEY_FILE`` or ``~/.config/ipt-outcomes/pseudonym.key``), created with
    a random 256-bit key on first use (mode 600). The key file must not lie inside the output
    folder ``out_dir``; the key is never logged.

    Raises
    ------
    InputError
        If the key is not hex or shorter than 128 bits (32 hex digits): a short key lets
        anyone holding an output try every key and recover the patient ids behind the
        pseudonyms. The message says how to make a key.
    """
    if os.environ.get(KEY_ENV):
        return _key_from_hex(os.environ[KEY_ENV].strip(), KEY_ENV)
    path = Path(os.environ.get(KEY_FILE_ENV, str(DEFAULT_KEY_FILE))).expanduser().resolve()
    if out_dir is not None and out_dir.resolve() in path.parents:
        raise InputError(path, "the pseudonymisation key file must not be inside the output")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        log.info("created a new pseudonymisation key file")
    return _key_from_hex(path.read_text().strip(), str(path))


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes.

    A run asks for the same input files' digests several times (is anything to rerun, are
    the validated artifacts current, what the manifest records); the digest is read once
    per file version, keyed by path, size, modification time and inode, so a file that is
    rewritten or touched is read again.
    """
    status = path.stat()
    return _sha256_of(str(path.resolve()), status.st_size, status.st_mtime_ns, status.st_ino)


@functools.lru_cache(maxsize=256)
def _sha256_of(path: str, _size: int, _mtime_ns: int, _inode: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
#: :data:`FORMULA_PREFIXES` as a regular expression (RE2, for Arrow's kernels).
FORMULA_PATTERN: Final = "^[=+\\-@\t\r]"


def spreadsheet_safe(series: pd.Series) -> pd.Series:
    """Prefix a text cell that a spreadsheet would run as a formula with an apostrophe.

    Cells starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return that are not
    numbers are prefixed (OWASP, CSV injection); numbers such as ``-3`` are left alone.
    """
    def safe(value: object) -> object:
        if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
            try:
                float(value)
            except ValueError:
                return "'" + value
        return value

    try:  # one vectorised pass finds the few candidates (a cell-by-cell map was 1 s/M)
        hits = _formula_candidates(series)
    except (AttributeError, TypeError):  # no text at all: nothing to defuse
        return series.map(safe)
    out = series.copy()
    if hits.any():
        out[hits] = series[hits].map(safe)
    return out


def _formula_candidates(series: pd.Series) -> npt.NDArray[np.bool_]:
    """Which cells are text starting with one of :data:`FORMULA_PREFIXES`: through Arrow's
    string kernels when every cell is text or missing (twice as fast as pandas' ``.str``
    on object columns), else pandas'."""
    try:
        text = pa.array(series, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        hits: npt.NDArray[np.bool_] = series.str.startswith(
            FORMULA_PREFIXES, na=False).to_numpy(dtype=bool)
        return hits
    found = pc.match_substring_regex(text, FORMULA_PATTERN).fill_null(False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole-number floats as integers (where every value is a whole number of magnitude at
    most 2**53; others stay floats), dates as ISO dates, formula-like text (headers
    included) defused."""
    out = frame.copy()
    out.columns = spreadsheet_safe(pd.Series([str(c) for c in out.columns])).tolist()
    for column in out.columns:
        series = out[column]
        if pd.api.types.is_float_dtype(series.dtype):
            values = series.dropna()
            numbers = values.to_numpy(dtype=float)
            # beyond 2**53 floats are not whole numbers we can vouch for (nor fit Int64)
            exact = bool((np.abs(numbers) <= 2.0 ** 53).all())
            if len(values) and exact and (values == values.round()).all():
                out[column] = series.astype("Int64")
        elif pd.api.types.is_datetime64_any_dtype(series.dtype):
            out[column] = series.dt.strftime("%Y-%m-%d")
        elif isinstance(series.dtype, pd.CategoricalDtype):
            out[column] = _safe_categories(series)
        elif series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
            out[column] = spreadsheet_safe(series)
    return out


def _safe_categories(series: pd.Series) -> pd.Series:
    """A categorical column with formula-like text categories defused (the categories, not
    every cell, when that keeps them distinct)."""
    categories = series.cat.categories
    if categories.dtype != object:
        return series
    text = pd.Series(categories, dtype=object)
    safe = spreadsheet_safe(text)
    if safe.equals(text):
        return series
    if safe.is_unique:
        return series.cat.rename_categories(safe.tolist())
    return spreadsheet_safe(series.astype(object))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success,
    so an interrupted run never leaves a half-written file that looks complete. A file
    whose content did not change is left untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield temporary
        if path.exists() and filecmp.cmp(temporary, path, shallow=False):
            return  # unchanged: keep the old file and its timestamp
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def inside(out_dir: Path, *parts: str) -> Path:
    """The path ``out_dir/parts...``, refused unless it resolves strictly inside ``out_dir``.

    The guard at the writing edge: names of tables, figures and models become file names,
    and whatever a name holds (``..``, ``/``, an absolute path, a symbolic link out of the
    folder), nothing is written outside the output folder.

    Raises
    ------
    InputError
        If the resolved path is not below the resolved ``out_dir``.

    Examples
    --------
    >>> inside(Path("out"), "tables", "rates.csv")
    PosixPath('out/tables/rates.csv')
    """
    path = out_dir.joinpath(*parts)
    root = out_dir.resolve()
    resolved = path.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise InputError(path, f"refused: would be written outside the output folder {out_dir}")
    return path


#: Tables of at least this many rows are written by DuckDB's CSV writer: the same bytes as
#: pandas' writer (floats in Python's shortest round-trip form, quotes only where needed),
#: about seven times faster (a 1.1 M-row table of fitted values: 13.2 s -> 1.8 s). Smaller
#: tables, and those it cannot write identically (:func:`_duckdb_writable`), go through
#: pandas.
FAST_CSV_ROWS: Final = 10_000


def write_csv(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    """Write a table as UTF-8 CSV with ``\\n`` line ends, atomically and byte-reproducibly.

    Large tables are written by DuckDB (:data:`FAST_CSV_ROWS`); the bytes are those of
    ``DataFrame.to_csv`` either way (tested on generated tables)."""
    table = _for_csv(frame)
    with atomic_path(path) as temporary:
        if not index and len(table) >= FAST_CSV_ROWS and _duckdb_writable(table):
            _duckdb_csv(table, temporary)
        else:
            table.to_csv(temporary, index=index, lineterminator="\n", encoding="utf-8")
    return path


def _duckdb_writable(frame: pd.DataFrame) -> bool:
    """Whether DuckDB writes ``frame`` exactly as pandas would: two or more uniquely named
    columns (pandas quotes the empty field of a one-column row), each float64, integer,
    nullable integer, bool, or text without carriage returns (which pandas leaves
    unquoted) or "#" (which DuckDB quotes), or categories of such text other than the empty
    one (which DuckDB quotes too); the names non-empty, without "#", distinct regardless of
    case."""
    names = [str(c) for c in frame.columns]
    # DuckDB's column names are case-blind (it renames "A" next to "a") and it names an
    # empty one; it quotes text holding "#" (its comment character), pandas does not
    if len(names) < 2 or len({n.lower() for n in names}) != len(names) or \
            not all(isinstance(c, str) and c and "#" not in c for c in frame.columns):
        return False
    for name in names:
        series = frame[name]
        dtype = series.dtype
        if dtype in (np.dtype(np.float64), np.dtype(bool)) or \
                pd.api.types.is_integer_dtype(dtype):
            continue
        if isinstance(dtype, pd.CategoricalDtype):  # DuckDB reads it as an ENUM of text
            series = pd.Series(dtype.categories, dtype=object)
            dtype = series.dtype
            if series.eq("").any():
                return False
        if dtype != np.dtype(object) or pd.api.types.infer_dtype(series, skipna=True) not in (
                "string", "empty"):
            return False
        try:
            text = pa.array(series, type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return False
        if any(pc.any(pc.match_substring(text, c)).as_py() for c in "\r#"):
            return False
    return True


def _duckdb_csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` (:func:`_duckdb_writable`) as CSV at ``path``, through DuckDB's writer.

    Empty text becomes NULL (DuckDB quotes an empty string, pandas does not; both write
    NULL as an empty field) and booleans are spelled as pandas spells them."""
    import duckdb  # a dependency already (the columnar route); imported only when used

    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if series.dtype == np.dtype(bool):
            columns[name] = np.where(series.to_numpy(), "True", "False").astype(object)
        elif series.dtype == np.dtype(object):
            columns[name] = series.mask(series.eq("")).to_numpy()
        else:
            columns[name] = series
    view = pd.DataFrame(columns, copy=False)
    target = str(path).replace("'", "''")
    with duckdb.connect() as connection:
        connection.register("frame", view)
        connection.execute(f"COPY frame TO '{target}' (FORMAT csv, HEADER true, "
                           "DELIMITER ',', QUOTE '\"', ESCAPE '\"', NEW_LINE '\\n')")


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table as Parquet (no pandas index), atomically."""
    with atomic_path(path) as temporary:
        frame.to_parquet(temporary, index=False)
    return path


def write_frame(frame: pd.DataFrame, path: Path) -> Path:
    """Write a table as Parquet with its index and dtypes (categoricals, datetimes, nullable
    integers), atomically: the run's internal artifacts (``pipeline.runner.artifacts``)."""
    nan_columns = [str(c) for c in frame.columns if frame[c].dtype == object
                   and frame[c].isna().all() and any(isinstance(v, float) for v in frame[c])]
    stored = frame.copy(deep=False)
    stored.attrs = {**frame.attrs, _NAN_COLUMNS: nan_columns}
    with atomic_path(path) as temporary:
        stored.to_parquet(temporary)
    return path


_NAN_COLUMNS = "ipt_all_nan_object_columns"


def read_frame(path: Path) -> pd.DataFrame:
    """Read back a table written by :func:`write_frame`, exactly as it was written."""
    frame = pd.read_parquet(path)
    # Parquet has one null: an all-missing object column comes back as None; restore NaN
    for column in frame.attrs.pop(_NAN_COLUMNS, []):
        frame[column] = pd.Series(float("nan"), index=frame.index, dtype=object)
    return frame


def write_bytes(data: bytes, path: Path) -> Path:
    """Write bytes (a PNG figure, say) atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return path


def write_text(text: str, path: Path) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes(text.encode("utf-8"), path)


def write_json(payload: Mapping[str, Any], path: Path) -> Path:
    """Write JSON with sorted keys and a final newline, so reruns give the same bytes."""
    text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
    return write_text(text, path)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object (an empty dict when the file does not exist)."""
    if not path.exists():
        return {}
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def write_study(tables: Mapping[str, pd.DataFrame], out_dir: Path, fmt: str = "csv") -> list[Path]:
    """Write each table of a study as ``NAME.csv`` or ``NAME.parquet`` in ``out_dir``."""
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"unknown format {fmt!r}; use csv or parquet")
    written = []
    for name, frame in tables.items():
        path = out_dir / f"{name}.{fmt}"
        written.append(write_csv(frame, path) if fmt == "csv" else write_parquet(frame, path))
    return written
