"""The key file's encoding and hashing: pure functions, no files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from prescore.serving import keyindex

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("width", [1, 7, 8, 9, 16, 23])
def test_scalar_hash_equals_the_vectorised_hash(width: int) -> None:
    rng = np.random.default_rng(width)
    keys = [bytes(rng.integers(0, 255, rng.integers(0, width + 1)).tolist()) for _ in range(300)]
    keys = [k.rstrip(b"\x00") for k in keys]  # as numpy hands 'S' values back
    vectorised = keyindex.hash_keys(np.array(keys, f"S{width}")).tolist()
    assert vectorised == [keyindex.hash_key(k, width) for k in keys]


@pytest.mark.parametrize(
    ("key", "kinds", "expected"),
    [
        ("C1", ["string"], ("C1",)),
        (42, ["string"], ("42",)),
        ("42", ["int"], (42,)),
        ("-042", ["int"], (-42,)),
        (("C1", "7"), ["string", "int"], ("C1", 7)),
        (["C1", 7], ["string", "int"], ("C1", 7)),
    ],
)
def test_canonical_key_follows_the_column_kinds(key: object, kinds: list, expected: tuple) -> None:
    assert keyindex.canonical_key(key, kinds) == expected
    assert keyindex.canonical_keys([key], kinds) == [expected]


@pytest.mark.parametrize(
    ("key", "kinds", "reason"),
    [
        (("a", "b"), ["string"], "expected 1 key values, got 2"),
        (True, ["int"], "True is not a int key value"),
        ("4.2", ["int"], "'4.2' is not a int key value"),
        (4.2, ["string"], "a key is a value or a sequence of values, got float"),
    ],
)
def test_canonical_key_says_what_is_wrong(key: object, kinds: list, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        keyindex.canonical_key(key, kinds)


def test_vectorised_encoding_equals_encode_key_and_keeps_keys_apart() -> None:
    keys = [("a", 1), ("a\x00", 1), ("a", 10), ("a\x01", 1), ("a\x01\x02", 1), ("", 0), ("é", -3)]
    table = pa.table({"k": [k for k, _ in keys], "n": pa.array([n for _, n in keys], pa.int64())})
    encoded = keyindex._encode_columns(table, ["k", "n"], ["string", "int"]).to_pylist()
    assert encoded == [keyindex.encode_key(k) for k in keys]
    assert len(set(encoded)) == len(keys)


@pytest.mark.parametrize(
    "texts",
    [["C01", "C02", "C10"], ["a\x00", "b\x01c", "d"], ["", "é", "long key"]],
    ids=["one length, nothing to escape", "bytes to escape", "several lengths"],
)
def test_lone_string_keys_encode_and_pad_like_encode_key(texts: list[str]) -> None:
    column = pa.array(["skipped", *texts]).slice(1)  # an offset, as a chunk of a table can have
    encoded = keyindex._encode_columns(pa.table({"k": column}), ["k"], ["string"])
    expected = [keyindex.encode_key((t,)) for t in texts]
    assert encoded.to_pylist() == expected
    width = max(map(len, expected))
    padded = keyindex._padded(encoded, width).to_pylist()
    assert padded == [e.ljust(width, b"\x00") for e in expected]


@pytest.mark.parametrize("size", [0, 1, 1000, 70_000])
def test_radix_order_by_bucket_equals_a_stable_argsort(size: int) -> None:
    buckets = np.random.default_rng(size).integers(0, max(size, 1), size)
    expected = np.argsort(buckets, kind="stable")
    assert np.array_equal(keyindex.order_by_bucket(buckets), expected)


def test_batch_fast_path_encodes_like_encode_key_and_leaves_escapes_to_it() -> None:
    plain = [("C1",), ("",), ("é",), ("\ud800",), ("x" * 300,)]
    assert keyindex._encode_plain(plain) == [keyindex.encode_key(k) for k in plain]
    # A key holding a character that encode_key escapes sends the whole batch the slow way.
    assert keyindex._encode_plain([("a\x00",), ("b",)]) is None
    assert keyindex._encode_plain([("b",), ("a\x01",)]) is None
