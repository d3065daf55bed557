"""Hash values and packed batches of hashes.

A :class:`Hash` is the bits of one perceptual hash, read as a big-endian integer
exactly as imagehash prints it (the first bit of the flattened bit array is the most
significant) and as ThreatExchange prints PDQ (64 hex digits, ``w[15]`` first).
So ``str(h)`` is the same hex those tools write and their lists load unchanged.

A :class:`HashBatch` packs many hashes of one algorithm into an ``(n, words)`` array
of ``uint64``: word 0 holds the most significant 64 bits, zero-padded on the left
when the bit length is not a multiple of 64. Indexes and matching work on batches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from .errors import IncompatibleHashError, InvalidHashError, unknown_algorithm

__all__ = ["DEFAULT_BITS", "Hash", "HashBatch", "default_bits", "record_default_bits"]

# Bit length of each algorithm at its default options. The hasher registry records its
# algorithms here when they register, so the store and the index (which sit below the
# hashers) can check lengths without importing them. PDQ lists arrive before any hasher.
_DEFAULT_BITS: dict[str, int] = {"pdq": 256}
DEFAULT_BITS: Mapping[str, int] = MappingProxyType(_DEFAULT_BITS)
"""Bit length of each known algorithm's hashes at its default options."""


def default_bits(algorithm: str) -> int:
    """The bit length of ``algorithm``'s hashes at its default options.

    Raises :class:`~hashmatch.errors.UnknownAlgorithmError` (with a "did you mean")
    for a name no hasher registered.
    """
    try:
        return _DEFAULT_BITS[algorithm]
    except (KeyError, TypeError):
        raise unknown_algorithm(algorithm, _DEFAULT_BITS) from None


def record_default_bits(algorithm: str, bits: int) -> None:
    """Record a registered algorithm's bit length (called by the hasher registry)."""
    known = _DEFAULT_BITS.get(algorithm)
    if known is not None and known != bits:
        raise IncompatibleHashError(f"{algorithm} hashes have {known} bits, not {bits}")
    _DEFAULT_BITS[algorithm] = _check_bits(bits)

_HEX_RE = re.compile(r"[0-9a-fA-F]+")


def _check_algorithm(algorithm: str) -> str:
    if not isinstance(algorithm, str) or not algorithm:
        raise InvalidHashError(f"algorithm must be a non-empty string, got {algorithm!r}")
    return algorithm


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits <= 0:
        raise InvalidHashError(f"bit length must be a positive integer, got {bits!r}")
    return int(bits)


def _hex_width(bits: int) -> int:
    return (bits + 3) // 4


@dataclass(frozen=True, slots=True, repr=False)
class Hash:
    """One perceptual hash: the algorithm's name, its bit length and its bits.

    ``a - b`` is the Hamming distance; it raises :class:`IncompatibleHashError` when
    the algorithms or lengths differ. Build one with :meth:`from_hex`,
    :meth:`from_bytes`, :meth:`from_bool_array` or :meth:`from_imagehash`, or get it
    from a hasher. ``bits`` is always the bit length; the bits themselves are ``value``.
    """

    value: int
    algorithm: str
    bits: int

    def __post_init__(self) -> None:
        _check_algorithm(self.algorithm)
        _check_bits(self.bits)
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise InvalidHashError(f"hash value must be an int, got {type(self.value).__name__}")
        if self.value < 0 or self.value >> self.bits:
            raise InvalidHashError(f"hash value does not fit in {self.bits} bits")

    # -- constructors -------------------------------------------------------------
    @classmethod
    def from_hex(cls, text: str, *, algorithm: str, bits: int | None = None) -> Hash:
        """Parse hex as imagehash and ThreatExchange write it.

        ``bits`` defaults to four per hex digit; give it for lengths that are not a
        multiple of four (imagehash's ``hash_size=6`` gives 36 bits in 9 digits).
        """
        if not isinstance(text, str):
            raise InvalidHashError(f"hex hash must be a string, got {type(text).__name__}")
        stripped = text.strip()
        if stripped[:2].lower() == "0x":
            stripped = stripped[2:]
        if not stripped or not _HEX_RE.fullmatch(stripped):
            # The text is not quoted: it may be (most of) a reference hash, which no message
            # may carry (issue 10).
            raise InvalidHashError(f"not a hexadecimal hash ({len(stripped)} characters)")
        nbits = len(stripped) * 4 if bits is None else _check_bits(bits)
        if len(stripped) != _hex_width(nbits):
            raise InvalidHashError(
                f"a {nbits}-bit hash has {_hex_width(nbits)} hex digits, got {len(stripped)}"
            )
        value = int(stripped, 16)
        if value >> nbits:
            raise InvalidHashError(f"hex hash does not fit in {nbits} bits")
        return cls(value, _check_algorithm(algorithm), nbits)

    @classmethod
    def from_bytes(cls, data: bytes, *, algorithm: str, bits: int | None = None) -> Hash:
        """Big-endian bytes, as :meth:`to_bytes` writes them."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidHashError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        nbits = len(data) * 8 if bits is None else _check_bits(bits)
        if len(data) != (nbits + 7) // 8:
            raise InvalidHashError(f"a {nbits}-bit hash has {(nbits + 7) // 8} bytes, got {len(data)}")
        value = int.from_bytes(data, "big")
        if value >> nbits:
            raise InvalidHashError(f"bytes do not fit in {nbits} bits")
        return cls(value, _check_algorithm(algorithm), nbits)

    @classmethod
    def from_bool_array(cls, array: npt.ArrayLike, *, algorithm: str) -> Hash:
        """A boolean array (any shape), flattened in C order; first element is the top bit."""
        arr = np.asarray(array)
        if arr.size == 0:
            raise InvalidHashError("empty bit array")
        if arr.dtype != np.bool_:
            if not np.isin(arr, (0, 1)).all():
                raise InvalidHashError("bit array must hold only 0 and 1")
            arr = arr.astype(bool)
        flat = arr.ravel()
        packed = np.packbits(flat)  # MSB first
        value = int.from_bytes(packed.tobytes(), "big") >> (packed.size * 8 - flat.size)
        return cls(value, _check_algorithm(algorithm), int(flat.size))

    # -- conversions --------------------------------------------------------------
    def hex(self) -> str:
        """Lower-case hex, zero-padded to ``ceil(bits / 4)`` digits."""
        return format(self.value, f"0{_hex_width(self.bits)}x")

    def to_bytes(self) -> bytes:
        return self.value.to_bytes((self.bits + 7) // 8, "big")

    @classmethod
    def from_imagehash(cls, value: Any, *, algorithm: str) -> Hash:
        """An ``imagehash.ImageHash`` (its ``.hash`` bit array), as imagehash computed it.

        imagehash objects do not know their algorithm, so name it: ``algorithm="phash"``.
        """
        array = getattr(value, "hash", None)
        if array is None:
            raise InvalidHashError(f"expected an imagehash.ImageHash, got {type(value).__name__}")
        return cls.from_bool_array(array, algorithm=algorithm)

    def to_imagehash(self) -> Any:
        """This hash as an ``imagehash.ImageHash`` (a square bit array when the length is
        a square, as imagehash's own hashes are; else one row)."""
        # Imported here, not at the top: imagehash (with SciPy) adds ~0.11 s to importing
        # this bottom-floor module (python -X importtime), for a conversion few callers use.
        import imagehash

        bits = self.to_bool_array()
        side = int(round(self.bits**0.5))
        shape = (side, side) if side * side == self.bits else (1, self.bits)
        return imagehash.ImageHash(bits.reshape(shape))

    def to_bool_array(self) -> npt.NDArray[np.bool_]:
        """The bits as a flat boolean array, most significant first."""
        nbytes = (self.bits + 7) // 8
        raw = np.frombuffer(self.value.to_bytes(nbytes, "big"), dtype=np.uint8)
        return np.unpackbits(raw)[nbytes * 8 - self.bits :].astype(bool)

    def to_words(self) -> npt.NDArray[np.uint64]:
        """The packed row that :class:`HashBatch` stores for this hash."""
        nwords = (self.bits + 63) // 64
        raw = self.value.to_bytes(nwords * 8, "big")
        return np.frombuffer(raw, dtype=">u8").astype(np.uint64)

    # -- comparison ---------------------------------------------------------------
    def distance(self, other: Hash) -> int:
        """Hamming distance; raises :class:`IncompatibleHashError` across algorithms."""
        if not isinstance(other, Hash):
            raise TypeError(f"cannot compare a Hash with {type(other).__name__}")
        if other.algorithm != self.algorithm or other.bits != self.bits:
            raise IncompatibleHashError(
                f"cannot compare a {self.bits}-bit {self.algorithm} hash "
                f"with a {other.bits}-bit {other.algorithm} hash"
            )
        return (self.value ^ other.value).bit_count()

    def __sub__(self, other: object) -> int:
        if not isinstance(other, Hash):
            return NotImplemented
        return self.distance(other)

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"Hash({self.hex()!r}, algorithm={self.algorithm!r}, bits={self.bits})"

    def __len__(self) -> int:
        return self.bits


class HashBatch(Sequence[Hash]):
    """Many hashes of one algorithm and bit length, packed as ``(n, words)`` uint64.

    The array is C-contiguous and read-only; indexes take it as it is.
    """

    __slots__ = ("_words", "algorithm", "bits")

    def __init__(self, words: npt.ArrayLike, *, algorithm: str, bits: int) -> None:
        self.algorithm = _check_algorithm(algorithm)
        self.bits = _check_bits(bits)
        nwords = (self.bits + 63) // 64
        arr = np.asarray(words)
        if arr.ndim == 1 and nwords == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != nwords:
            raise InvalidHashError(
                f"a batch of {self.bits}-bit hashes needs shape (n, {nwords}), got {arr.shape}"
            )
        if arr.dtype != np.uint64:
            if arr.size and (not np.issubdtype(arr.dtype, np.integer) or (arr < 0).any()):
                raise InvalidHashError(f"hash words must be unsigned 64-bit integers, got {arr.dtype}")
            arr = arr.astype(np.uint64)
        spare = nwords * 64 - self.bits
        if spare and arr.size and (arr[:, 0] >> np.uint64(64 - spare)).any():
            raise InvalidHashError(f"hash words have bits set above bit {self.bits}")
        if arr.flags.writeable or not arr.flags.c_contiguous:
            # Own a frozen copy, so that an index can keep it without the caller changing it.
            arr = np.array(arr, dtype=np.uint64, order="C", copy=True)
            arr.flags.writeable = False
        self._words = arr

    # -- constructors -------------------------------------------------------------
    @classmethod
    def empty(cls, *, algorithm: str, bits: int) -> HashBatch:
        return cls(np.zeros((0, (bits + 63) // 64), np.uint64), algorithm=algorithm, bits=bits)

    @classmethod
    def from_hashes(
        cls, hashes: Iterable[Hash], *, algorithm: str | None = None, bits: int | None = None
    ) -> HashBatch:
        """Pack hashes; all must share one algorithm and bit length."""
        items = list(hashes)
        if not items:
            if algorithm is None or bits is None:
                raise InvalidHashError("an empty batch needs algorithm and bits")
            return cls.empty(algorithm=algorithm, bits=bits)
        algorithm = items[0].algorithm if algorithm is None else algorithm
        bits = items[0].bits if bits is None else bits
        nwords = (bits + 63) // 64
        raw = bytearray()
        for i, h in enumerate(items):
            if not isinstance(h, Hash):
                raise InvalidHashError(f"item {i} is a {type(h).__name__}, not a Hash")
            if h.algorithm != algorithm or h.bits != bits:
                raise IncompatibleHashError(
                    f"item {i} is a {h.bits}-bit {h.algorithm} hash in a batch of "
                    f"{bits}-bit {algorithm} hashes"
                )
            raw += h.value.to_bytes(nwords * 8, "big")
        words = np.frombuffer(bytes(raw), dtype=">u8").astype(np.uint64).reshape(-1, nwords)
        return cls(words, algorithm=algorithm, bits=bits)

    @classmethod
    def from_hex(cls, texts: Iterable[str], *, algorithm: str, bits: int | None = None) -> HashBatch:
        """Parse many hex strings; the first bad one raises :class:`InvalidHashError`
        naming its position."""
        hashes = []
        for i, text in enumerate(texts):
            try:
                hashes.append(Hash.from_hex(text, algorithm=algorithm, bits=bits))
            except InvalidHashError as exc:
                raise InvalidHashError(f"hash {i}: {exc}") from None
        if bits is None and hashes:
            bits = hashes[0].bits
        if bits is None:
            raise InvalidHashError("an empty batch needs bits")
        return cls.from_hashes(hashes, algorithm=algorithm, bits=bits)

    @classmethod
    def concat(cls, batches: Sequence[HashBatch]) -> HashBatch:
        if not batches:
            raise InvalidHashError("nothing to concatenate")
        first = batches[0]
        for b in batches[1:]:
            first._check_compatible(b)
        return cls(np.concatenate([b.words for b in batches]), algorithm=first.algorithm, bits=first.bits)

    # -- access -------------------------------------------------------------------
    @property
    def words(self) -> npt.NDArray[np.uint64]:
        """The read-only ``(n, words)`` uint64 array."""
        return self._words

    @property
    def nwords(self) -> int:
        return self._words.shape[1]

    def __len__(self) -> int:
        return self._words.shape[0]

    @overload
    def __getitem__(self, key: int) -> Hash: ...
    @overload
    def __getitem__(self, key: slice | npt.ArrayLike) -> HashBatch: ...
    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, (int, np.integer)):
            row = self._words[key]
            value = 0
            for w in row:
                value = (value << 64) | int(w)
            return Hash(value, self.algorithm, self.bits)
        return HashBatch(self._words[key], algorithm=self.algorithm, bits=self.bits)

    def __iter__(self) -> Iterator[Hash]:
        for i in range(len(self)):
            yield self[i]

    def to_hex(self) -> list[str]:
        return [h.hex() for h in self]

    def _check_compatible(self, other: HashBatch | Hash) -> None:
        if other.algorithm != self.algorithm or other.bits != self.bits:
            raise IncompatibleHashError(
                f"a batch of {self.bits}-bit {self.algorithm} hashes cannot be combined "
                f"with {other.bits}-bit {other.algorithm}"
            )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HashBatch):
            return NotImplemented
        return (
            self.algorithm == other.algorithm
            and self.bits == other.bits
            and np.array_equal(self._words, other._words)
        )

    __hash__ = None  # type: ignore[assignment]  # holds an array: not a dict key

    def __repr__(self) -> str:
        return f"HashBatch(n={len(self)}, algorithm={self.algorithm!r}, bits={self.bits})"
