from __future__ import annotations

import imagehash
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashmatch import Hash, HashBatch
from hashmatch.errors import IncompatibleHashError, InvalidHashError

bit_lengths = st.sampled_from([1, 7, 36, 63, 64, 65, 100, 128, 256])


@st.composite
def hashes(draw, bits=None, algorithm="phash"):
    n = draw(bit_lengths) if bits is None else bits
    return Hash(draw(st.integers(0, 2**n - 1)), algorithm, n)


@given(hashes())
def test_hash_hex_round_trip(h):
    assert Hash.from_hex(h.hex(), algorithm=h.algorithm, bits=h.bits) == h
    assert len(h.hex()) == (h.bits + 3) // 4


@given(hashes())
def test_hash_bytes_and_bits_round_trip(h):
    assert Hash.from_bytes(h.to_bytes(), algorithm=h.algorithm, bits=h.bits) == h
    assert Hash.from_bool_array(h.to_bool_array(), algorithm=h.algorithm) == h


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(hashes(bits=n), hashes(bits=n))))
def test_hash_distance_is_popcount_of_xor(pair):
    a, b = pair
    naive = sum(x != y for x, y in zip(a.to_bool_array(), b.to_bool_array()))
    assert a - b == naive == b - a
    assert a - a == 0


def test_hash_hex_matches_imagehash_for_its_bit_arrays(rng):
    for shape in [(8, 8), (16, 16), (6, 6), (5, 5)]:
        bits = rng.random(shape) > 0.5
        ref = imagehash.ImageHash(bits)
        ours = Hash.from_bool_array(bits, algorithm="phash")
        assert str(ours) == str(ref)
        assert ours.bits == bits.size
        other_bits = rng.random(shape) > 0.5
        assert ours - Hash.from_bool_array(other_bits, algorithm="phash") == ref - imagehash.ImageHash(other_bits)
        assert Hash.from_hex(str(ref), algorithm="phash", bits=bits.size) == ours


def test_hash_subtraction_rejects_other_algorithm_or_length():
    a = Hash.from_hex("ff00ff00ff00ff00", algorithm="phash")
    with pytest.raises(IncompatibleHashError, match="dhash"):
        a - Hash.from_hex("ff00ff00ff00ff00", algorithm="dhash")
    with pytest.raises(IncompatibleHashError):
        a - Hash.from_hex("ff00ff00ff00ff00ff", algorithm="phash")


def test_hash_equality_with_non_hash_is_not_implemented():
    a = Hash.from_hex("00ff", algorithm="phash")
    assert a.__eq__("00ff") is NotImplemented
    assert a != "00ff"
    with pytest.raises(TypeError):
        a - "00ff"  # type: ignore[operator]


def test_hash_is_frozen_and_hash_covers_every_field():
    a = Hash.from_hex("00ff", algorithm="phash")
    with pytest.raises(AttributeError):
        a.value = 3  # type: ignore[misc]
    assert len({a, Hash.from_hex("00ff", algorithm="dhash"), Hash.from_hex("00ff", algorithm="phash", bits=13)}) == 3
    assert repr(a) == "Hash('00ff', algorithm='phash', bits=16)"
    assert str(a) == a.hex() == "00ff"


@pytest.mark.parametrize(
    "text, bits, message",
    [
        ("", None, "not a hexadecimal"),
        ("xyz", None, "not a hexadecimal"),
        ("ff ff", None, "not a hexadecimal"),
        ("fff", 64, "16 hex digits"),
        ("f" * 9, 33, "does not fit"),
    ],
)
def test_hash_from_hex_rejects_malformed(text, bits, message):
    with pytest.raises(InvalidHashError, match=message):
        Hash.from_hex(text, algorithm="phash", bits=bits)


def test_hash_from_hex_accepts_upper_case_prefix_and_whitespace():
    assert Hash.from_hex(" 0xFFd7\n", algorithm="phash") == Hash(0xFFD7, "phash", 16)


def test_hash_constructor_validates_fields():
    with pytest.raises(InvalidHashError):
        Hash(1 << 64, "phash", 64)
    with pytest.raises(InvalidHashError):
        Hash(-1, "phash", 64)
    with pytest.raises(InvalidHashError):
        Hash(1, "", 64)
    with pytest.raises(InvalidHashError):
        Hash(1, "phash", 0)


@given(st.lists(hashes(bits=256, algorithm="pdq"), max_size=20))
def test_batch_round_trips_hashes_and_hex(items):
    batch = HashBatch.from_hashes(items, algorithm="pdq", bits=256)
    assert len(batch) == len(items)
    assert list(batch) == items
    assert batch.words.shape == (len(items), 4)
    assert HashBatch.from_hex(batch.to_hex(), algorithm="pdq", bits=256) == batch


@given(hashes(bits=100))
def test_batch_words_match_hash_to_words(h):
    batch = HashBatch.from_hashes([h])
    assert np.array_equal(batch.words[0], h.to_words())
    assert batch.words.dtype == np.uint64 and batch.words.flags.c_contiguous


def test_batch_is_read_only_and_copies_writable_input():
    words = np.arange(6, dtype=np.uint64).reshape(3, 2)
    batch = HashBatch(words, algorithm="x", bits=128)
    words[0, 0] = 99
    assert batch.words[0, 0] == 0
    with pytest.raises(ValueError):
        batch.words[0, 0] = 1


def test_batch_rejects_mixed_algorithms_and_bad_shapes():
    a = Hash.from_hex("00ff", algorithm="phash")
    with pytest.raises(IncompatibleHashError, match="item 1"):
        HashBatch.from_hashes([a, Hash.from_hex("00ff", algorithm="dhash")])
    with pytest.raises(InvalidHashError, match="shape"):
        HashBatch(np.zeros((3, 2), np.uint64), algorithm="phash", bits=64)
    with pytest.raises(InvalidHashError, match="above bit"):
        HashBatch(np.array([[1 << 40]], dtype=np.uint64), algorithm="phash", bits=36)
    with pytest.raises(InvalidHashError, match="hash 1"):
        HashBatch.from_hex(["00ff", "zz"], algorithm="phash")


def test_batch_slicing_and_concat():
    items = [Hash(i, "phash", 64) for i in range(5)]
    batch = HashBatch.from_hashes(items)
    assert list(batch[1:3]) == items[1:3]
    assert list(HashBatch.concat([batch[:2], batch[2:]])) == items
    assert len(HashBatch.empty(algorithm="pdq", bits=256)) == 0


def test_from_hex_errors_never_quote_the_text() -> None:
    secret = "f" * 63 + "g"
    with pytest.raises(InvalidHashError) as info:
        Hash.from_hex(secret, algorithm="pdq")
    assert "fff" not in str(info.value)


def test_imagehash_objects_go_in_and_out_unchanged() -> None:
    import imagehash

    theirs = imagehash.hex_to_hash("ffd7918181c9c1c0")
    ours = Hash.from_imagehash(theirs, algorithm="phash")
    assert ours == Hash.from_hex("ffd7918181c9c1c0", algorithm="phash")
    back = ours.to_imagehash()
    assert back == theirs and back.hash.shape == (8, 8)
    with pytest.raises(InvalidHashError):
        Hash.from_imagehash("ffd7918181c9c1c0", algorithm="phash")


def test_default_bits_knows_registered_algorithms_and_suggests() -> None:
    from hashmatch.errors import UnknownAlgorithmError
    from hashmatch.hashes import DEFAULT_BITS, default_bits

    assert {name: DEFAULT_BITS[name] for name in ("ahash", "pdq", "phash")} == {"ahash": 64, "pdq": 256, "phash": 64}
    with pytest.raises(UnknownAlgorithmError, match="did you mean 'whash'"):
        default_bits("wahsh")
