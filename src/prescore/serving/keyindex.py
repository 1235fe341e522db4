"""The key file: a hash index beside each serving snapshot, read into memory, for sub-millisecond lookups.

`snapshots/<run_date>-v<N>.keys.arrow` is an Arrow IPC file with one record batch, one row per key:

    key           fixed_size_binary(w)  the key encoded as bytes (below), zero-padded to w
    score         float64
    bucket_start  int64                 first row of hash bucket i (the rows are in bucket order)
    model_name, model_version           string, only when they vary within the snapshot
    scored_at, valid_until              timestamp[us], only when they vary within the snapshot
    reasons       list<struct>          only with score.explain: each score's top features

Schema metadata holds the key columns and their kinds, the run date, and each of the last four
columns that is the same on every row (the usual case: one scoring run stamps one model and one
time). A constant costs a lookup nothing: a 1000-key batch copies it instead of converting 1000
values, and judges freshness once.

Why a hash index and not a key-sorted file: a binary search over 10M keys is ~24 dependent reads
from memory a key, even vectorised too slow for the 1000-key batch target (bench/README.md).
With as many buckets as keys, a key costs one read of the bucket directory and one or two of the
keys, and numpy runs a batch's reads side by side.

Encoding, so that `get(42)` and `get("42")` find the same row: a string part is UTF-8 with \\x01
escaped as \\x01\\x02 and \\x00 as \\x01\\x01; an integer part is its decimal text; a date part
(a forecast's target_date) is its ISO text YYYY-MM-DD, given as a date or that text; composite keys
are joined with \\x00. Within one arity the encoding is injective, even once numpy drops the zero
padding. The width w is the longest encoded key, so a use case with long keys pays w bytes a row.

Why read into memory and not memory-map: a mapped file truncated in place (a careless copy, a
prune from another host over NFS) kills the whole process with SIGBUS at its next read, every use
case with it. A private copy costs the file's size in each serving process (about 25 bytes a key)
and one read at open; lookups read the same arrays.
Every file is checked at open (column sizes, the bucket directory), so a damaged one raises
ValueError there, never a crash or a wrong answer later.
"""

from __future__ import annotations

import json
import os
import re
import reprlib
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prescore.catalog import REASONS

SUFFIX = ".keys.arrow"
FORMAT = "prescore-keys-2"
SEPARATOR = "\x00"
NEVER_STORED = b"\xff"  # no UTF-8 text holds this byte, so no stored key equals it
KeyKind = Literal["string", "int", "date"]
KeyPart = str | int
VALUE_COLUMNS = ("score", "scored_at", "valid_until", "model_name", "model_version")
STAMPS = {"model_name": pa.string(), "model_version": pa.string()}
TIMES = {"scored_at": pa.timestamp("us"), "valid_until": pa.timestamp("us")}
_DECIMAL = re.compile(r"[+-]?[0-9]{1,20}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MIX = np.uint64(0x9E3779B97F4A7C15)  # the golden-ratio multiplier: spreads each word's bits
_FMIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))  # murmur3's finaliser


def key_file(snapshot: Path) -> Path:
    """The key file that goes with a snapshot file: same folder, same stem."""
    return snapshot.with_suffix(SUFFIX)


# ---------------------------------------------------------------- keys as bytes


def canonical_keys(keys: Sequence[Any], kinds: Sequence[KeyKind]) -> list[tuple[KeyPart, ...]]:
    """canonical_key of each key; a lone value already of the column's type skips the checks."""
    if len(kinds) != 1 or kinds[0] == "date":
        return [canonical_key(key, kinds) for key in keys]
    lone = str if kinds[0] == "string" else int
    return [(key,) if type(key) is lone else canonical_key(key, kinds) for key in keys]


def canonical_key(key: object, kinds: Sequence[KeyKind]) -> tuple[KeyPart, ...]:
    """The key as the typed tuple the snapshot stores, or ValueError saying what is wrong with it."""
    if isinstance(key, str | int | date):
        values: tuple[object, ...] = (key,)
    elif isinstance(key, Sequence):
        values = tuple(key)
    else:
        raise ValueError(f"a key is a value or a sequence of values, got {type(key).__name__}")
    if len(values) != len(kinds):
        raise ValueError(
            f"expected {len(kinds)} key values, got {len(values)}: {reprlib.repr(key)}"
        )
    return tuple(_canonical_part(value, kind) for value, kind in zip(values, kinds, strict=True))


def _canonical_part(value: object, kind: KeyKind) -> KeyPart:
    if isinstance(value, bool):  # bool is an int to Python, never a key
        raise ValueError(f"{value!r} is not a {kind} key value")
    if kind == "string" and isinstance(value, str | int):
        return str(value)
    if kind == "int" and isinstance(value, int):
        return value
    if kind == "int" and isinstance(value, str) and _DECIMAL.fullmatch(value):
        return int(value)
    if kind == "date":
        return _canonical_date(value)
    raise ValueError(f"{reprlib.repr(value)} is not a {kind} key value")


def _canonical_date(value: object) -> str:
    """ISO text of a date, or of a YYYY-MM-DD text naming a real day; a datetime is refused (a
    time of day would be dropped silently)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ValueError(f"{reprlib.repr(value)} is not a date key value (YYYY-MM-DD)")


def _escape(text: str) -> str:
    return text.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01")


def encode_key(key: tuple[KeyPart, ...]) -> bytes:
    """Bytes of a canonical key (see the module docstring)."""
    # surrogatepass: a lone surrogate (no valid UTF-8, so never stored) encodes instead of raising.
    if len(key) == 1:  # the usual key, without the join
        value = key[0]
        return (_escape(value) if isinstance(value, str) else str(value)).encode(
            errors="surrogatepass"
        )
    text = SEPARATOR.join(_escape(v) if isinstance(v, str) else str(v) for v in key)
    return text.encode(errors="surrogatepass")


def _encode_plain(keys: Sequence[tuple[KeyPart, ...]]) -> list[bytes] | None:
    """encode_key of single-string keys when none holds a character to escape (the usual batch),
    in one pass: about a third of a 1000-key batch's time went to encode_key per key. None when
    some key needs escaping."""
    texts = cast(list[str], [key[0] for key in keys])  # canonical parts of a string column
    joined = "".join(texts)
    if "\x00" in joined or "\x01" in joined:
        return None
    return [text.encode(errors="surrogatepass") for text in texts]


def _encode_columns(table: pa.Table, keys: list[str], kinds: list[KeyKind]) -> pa.Array:
    """encode_key for every row of `table`, vectorised in Arrow."""
    parts = []
    for name, kind in zip(keys, kinds, strict=True):
        column = table.column(name).combine_chunks().cast(pa.string())  # a date as YYYY-MM-DD
        if kind == "string" and _holds_escaped_bytes(column):
            column = pc.replace_substring(column, "\x01", "\x01\x02")
            column = pc.replace_substring(column, "\x00", "\x01\x01")
        parts.append(column)
    if len(parts) == 1:  # the usual key: its text is its encoding
        return parts[0].cast(pa.binary())
    return pc.binary_join_element_wise(*parts, SEPARATOR).cast(pa.binary())


def _value_bytes(array: pa.Array) -> np.ndarray:
    """The bytes of a null-free string or binary array's values, end to end, as a numpy view."""
    offsets = np.frombuffer(array.buffers()[1], np.int32, len(array) + 1, array.offset * 4)
    data = array.buffers()[2]
    values = np.frombuffer(data, np.uint8) if data is not None else np.empty(0, np.uint8)
    return values[offsets[0] : offsets[-1]]


def _holds_escaped_bytes(column: pa.Array) -> bool:
    """Whether any value holds \\x00 or \\x01, the bytes the encoding escapes: a scan of the
    bytes, where escaping every value costs two string replacements (a second at 10M keys)."""
    return bool(_value_bytes(column).min(initial=2) < 2)


def _padded(encoded: pa.Array, width: int) -> pa.FixedSizeBinaryArray:
    """Each value zero-padded to `width` bytes, as Arrow fixed-size binary."""
    values = _value_bytes(encoded)
    if len(values) == width * len(encoded):  # all of one length (the usual ID): no copy
        buffer = pa.py_buffer(values)
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(encoded), [None, buffer])
    padding = pc.binary_repeat(pa.scalar(b"\x00"), pc.subtract(width, pc.binary_length(encoded)))
    return pc.binary_join_element_wise(encoded, padding, b"").cast(pa.binary(width))


def key_kind(field: pa.Field) -> KeyKind:
    if pa.types.is_integer(field.type):
        return "int"
    if field.type in (pa.string(), pa.large_string(), pa.string_view()):
        return "string"
    if pa.types.is_date32(field.type):
        return "date"
    raise ValueError(
        f"key column {field.name!r} is {field.type}: keys must be strings, integers or dates"
    )


# ---------------------------------------------------------------- hashing


def hash_keys(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each fixed-width key ('S<w>' array), over its bytes zero-padded to 8-byte words."""
    width = keys.dtype.itemsize
    padded = np.zeros((len(keys), -(-width // 8) * 8), np.uint8)
    padded[:, :width] = keys.view(np.uint8).reshape(len(keys), width)
    hashes = np.full(len(keys), width, np.uint64)
    shifted = np.empty_like(hashes)  # in place: each temporary of 10M keys costs 80 MB of writes
    for word in padded.view("<u8").T:
        hashes ^= word
        hashes *= _MIX
        hashes ^= np.right_shift(hashes, np.uint64(32), out=shifted)
    for multiplier in _FMIX:
        hashes ^= np.right_shift(hashes, np.uint64(33), out=shifted)
        hashes *= multiplier
    hashes ^= np.right_shift(hashes, np.uint64(33), out=shifted)
    return hashes


def hash_key(key: bytes, width: int) -> int:
    """hash_keys for one key, in plain Python: a single lookup is cheaper without numpy's calls."""
    padded = key.ljust(-(-width // 8) * 8, b"\x00")
    mask = (1 << 64) - 1
    value = width
    for (word,) in struct.iter_unpack("<Q", padded):
        value = ((value ^ word) * int(_MIX)) & mask
        value ^= value >> 32
    for multiplier in _FMIX:
        value ^= value >> 33
        value = (value * int(multiplier)) & mask
    return value ^ (value >> 33)


def bucket_of(keys: np.ndarray, buckets: int) -> np.ndarray:
    return (hash_keys(keys) % np.uint64(buckets)).astype(np.int64)


def order_by_bucket(bucket: np.ndarray) -> np.ndarray:
    """np.argsort(bucket, kind="stable"), as a radix sort on 16-bit digits: numpy sorts a 16-bit
    array by radix, so two passes beat one 64-bit sort (bench/README.md, publish)."""
    order = np.argsort(bucket.astype(np.uint16), kind="stable")  # the lowest 16 bits
    top = int(bucket.max()) if len(bucket) else 0
    shift = 16
    while top >> shift:
        digits = (bucket[order] >> shift).astype(np.uint16)
        order = order[np.argsort(digits, kind="stable")]
        shift += 16
    return order


# ---------------------------------------------------------------- writing


def write_key_file(
    target: Path,
    predictions: pa.Table,
    *,
    keys: list[str],
    run_date: date,
    constants: Mapping[str, str] | None = None,
) -> None:
    """Write the key file for one snapshot's predictions (one row per key; keys unique).

    `constants` gives, as text, the stamps known to be the same on every row (then `predictions`
    need not hold them); the others are read from `predictions`, and kept once if they turn out
    to be constant too. Written under a temporary name and renamed: a reader never sees a
    half-written file under the final name.
    """
    constants = constants or {}
    kinds = [key_kind(predictions.schema.field(k)) for k in keys]
    encoded = _encode_columns(predictions, keys, kinds)
    width = max(pc.max(pc.binary_length(encoded)).as_py() or 0, 1)
    fixed = _padded(encoded, width)
    rows = len(fixed)
    bucket = bucket_of(_view(fixed, np.dtype(f"S{width}")), rows) if rows else np.empty(0, np.int64)
    order = order_by_bucket(bucket)
    counts = np.bincount(bucket, minlength=rows)
    columns: dict[str, pa.Array] = {
        "key": fixed.take(order),
        "score": predictions.column("score").combine_chunks().cast(pa.float64()).take(order),
        "bucket_start": pa.array(np.cumsum(counts) - counts),
    }
    if REASONS in predictions.column_names:
        columns[REASONS] = predictions.column(REASONS).combine_chunks().take(order)
    metadata = {
        "format": FORMAT,
        "keys": json.dumps(keys),
        "kinds": json.dumps(kinds),
        "run_date": run_date.isoformat(),
    }
    for name, kind in (STAMPS | TIMES).items():
        if name in constants:
            metadata[name] = _stamp_text(name, constants[name])
            continue
        values = predictions.column(name).combine_chunks().cast(kind)
        extremes = pc.min_max(values)
        if len(values) and not values.null_count and extremes["min"] == extremes["max"]:
            value = values[0].as_py()
            metadata[name] = value if isinstance(value, str) else value.isoformat()
        else:
            columns[name] = values.take(order)
    for name, column in columns.items():
        if column.null_count:
            raise ValueError(f"{target}: column {name!r} has {column.null_count} nulls")
    batch = pa.RecordBatch.from_pydict(columns).replace_schema_metadata(metadata)
    partial = target.with_name(f".{target.name}.partial")
    with pa.OSFile(str(partial), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    os.replace(partial, target)


def _stamp_text(name: str, text: str) -> str:
    """A constant stamp as the metadata keeps it: a time as naive UTC ISO text, like the columns."""
    if name not in TIMES:
        return text
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat()


# ---------------------------------------------------------------- reading


def _view(array: pa.Array, dtype: np.dtype) -> np.ndarray:
    """A numpy view of a null-free fixed-width Arrow array's values, no copy; ValueError when its
    buffer is shorter than its length says (a damaged file)."""
    if len(array) == 0:
        return np.empty(0, dtype)
    return np.frombuffer(
        array.buffers()[1], dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


class KeyIndex:
    """One key file, read whole into this process's memory and checked; every array is a view of
    that copy, so nothing done to the file afterwards can reach a lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with pa.OSFile(str(path)) as source:  # read, not mapped: see the module docstring
            status = os.fstat(source.fileno())
            # What was read: the caller compares it with the file later to notice a change.
            self.signature = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
            reader = pa.ipc.open_file(source)
            if reader.num_record_batches != 1:
                raise ValueError(f"{reader.num_record_batches} record batches, not 1")
            self._batch = reader.get_batch(0)
        meta = {k.decode(): v.decode() for k, v in (self._batch.schema.metadata or {}).items()}
        if meta.get("format") != FORMAT:
            raise ValueError(
                f"{path}: not a {FORMAT} key file (an older prescore's?): publish its run date again"
            )
        self.keys: list[str] = json.loads(meta["keys"])
        self.kinds: list[KeyKind] = json.loads(meta["kinds"])
        self.run_date = date.fromisoformat(meta["run_date"])
        self.size = self._batch.num_rows
        self._batch.validate()  # every buffer as long as num_rows needs
        self.key_dtype = np.dtype(f"S{self._batch.schema.field('key').type.byte_width}")
        self._keys = _view(self._batch.column("key"), self.key_dtype)
        self._bucket_start = _view(self._batch.column("bucket_start"), np.dtype(np.int64))
        self.score = _view(self._batch.column("score"), np.dtype(np.float64))
        # Each stamp is a constant from the metadata or a column of the file, never both.
        self.constants: dict[str, Any] = {name: meta[name] for name in STAMPS if name in meta}
        self.constants |= {n: datetime.fromisoformat(meta[n]) for n in TIMES if n in meta}
        self._times = {
            name: _view(self._batch.column(name), np.dtype("datetime64[us]"))
            for name in TIMES
            if name not in self.constants
        }
        names = self._batch.schema.names
        self._reasons = self._batch.column(REASONS) if REASONS in names else None
        self._check()

    def _check(self) -> None:
        """ValueError unless the file is whole: one key kind per key column, every column
        num_rows long and without nulls, and a bucket directory that starts at row 0 and only
        moves forward within the rows (find reads rows between consecutive starts)."""
        if len(self.keys) != len(self.kinds) or not set(self.kinds) <= {"string", "int", "date"}:
            raise ValueError(f"key columns {self.keys} do not match their kinds {self.kinds}")
        columns = {"key", "score", "bucket_start", *self._times}
        columns |= {name for name in STAMPS if name not in self.constants}
        columns |= {REASONS} if self._reasons is not None else set()
        for name in columns:
            column = self._batch.column(name)  # KeyError when missing: caught as damage too
            if len(column) != self.size or column.null_count:
                raise ValueError(f"column {name!r}: {len(column)} values for {self.size} rows")
        starts = self._bucket_start
        if self.size and (
            starts[0] != 0 or starts[-1] > self.size or bool((np.diff(starts) < 0).any())
        ):
            raise ValueError("the bucket directory is out of order or out of range")

    def needles(self, keys: Sequence[tuple[KeyPart, ...]]) -> np.ndarray:
        """Canonical keys as needles of this file's 'S<w>' dtype.

        A key longer than the widest stored key cannot be present, and must not reach numpy as is:
        numpy would cut it to width, and the cut could match a real key.
        """
        width = self.key_dtype.itemsize
        encoded = _encode_plain(keys) if self.kinds == ["string"] else None
        if encoded is None:
            encoded = [encode_key(k) for k in keys]
        if encoded and max(map(len, encoded)) > width:
            encoded = [e if len(e) <= width else NEVER_STORED for e in encoded]
        return np.array(encoded, self.key_dtype)

    def find(self, needles: np.ndarray) -> np.ndarray:
        """The row of each needle, -1 when absent: hash to a bucket, then walk the batch's buckets
        side by side (a bucket holds one key on average)."""
        row = np.full(len(needles), -1, np.int64)
        if self.size == 0:
            return row
        bucket = bucket_of(needles, self.size)
        position = self._bucket_start[bucket]
        next_start = self._bucket_start[np.minimum(bucket + 1, self.size - 1)]
        end = np.where(bucket + 1 < self.size, next_start, self.size)
        searching = np.flatnonzero(position < end)
        while len(searching):
            candidate = position[searching]
            hit = self._keys[candidate] == needles[searching]
            row[searching[hit]] = candidate[hit]
            position[searching] += 1
            searching = searching[~hit & (position[searching] < end[searching])]
        return row

    def find_one(self, key: tuple[KeyPart, ...]) -> int:
        """find for one canonical key, in plain Python; -1 when absent."""
        encoded, width = encode_key(key), self.key_dtype.itemsize
        if self.size == 0 or len(encoded) > width:
            return -1
        bucket = hash_key(encoded, width) % self.size
        end = int(self._bucket_start[bucket + 1]) if bucket + 1 < self.size else self.size
        stored = encoded.rstrip(b"\x00")  # numpy hands 'S' values back without their padding
        for row in range(int(self._bucket_start[bucket]), end):
            if self._keys[row] == stored:
                return row
        return -1

    def columns(self, rows: np.ndarray) -> tuple[list[Any], ...]:
        """(score, model name, model version, scored_at, valid_until) of the rows, as lists."""
        stamps = (self._values(name, rows) for name in ("model_name", "model_version"))
        times = (self._values(name, rows) for name in TIMES)
        return (self.score[rows].tolist(), *stamps, *times)

    def reasons(self, rows: np.ndarray) -> list[list[dict[str, Any]]] | None:
        """The reasons of the rows (feature, contribution, value dicts), None when the snapshot
        holds none."""
        if self._reasons is None:
            return None
        return cast(list[list[dict[str, Any]]], self._reasons.take(rows).to_pylist())

    def times(self, name: str, rows: np.ndarray) -> np.ndarray:
        """scored_at or valid_until of the rows, as datetime64[us]."""
        if name in self.constants:
            return np.full(len(rows), np.datetime64(self.constants[name], "us"))
        return self._times[name][rows]

    def _values(self, name: str, rows: np.ndarray) -> list[Any]:
        if name in self.constants:
            return [self.constants[name]] * len(rows)
        if name in TIMES:
            return self._times[name][rows].tolist()
        return list(self._batch.column(name).take(rows).to_pylist())

    def close(self) -> None:
        """Nothing to release but memory: the file was closed once read, and the arrays go when
        their last view does, so a lookup still running on this index in another thread finishes
        safely. Kept so callers need not know how the file is held."""
