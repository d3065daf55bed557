"""The exception tree of hashmatch.

Every error that the public API raises for bad input is a :class:`HashmatchError`.
Children also inherit the builtin that callers would already catch, so an existing
``except ValueError`` or ``except OSError`` keeps working::

    HashmatchError
    ├── UsageError                  (ValueError)  a bad argument: option, threshold, spec field
    ├── InvalidHashError            (ValueError)  malformed hex, bytes or bit array
    ├── IncompatibleHashError       (ValueError)  different algorithm or bit length
    ├── UnknownAlgorithmError       (ValueError)  name not in the registry
    ├── IndexArgumentError          (ValueError)  bad ids or max_distance given to an index
    ├── ImageError                  (ValueError)
    │   ├── UnreadableImageError                  truncated, empty, not an image, unsupported
    │   └── ImageTooLargeError                    over a pixel or file-size limit
    ├── FileFormatError             (ValueError)  a file hashmatch wrote is not readable
    │   ├── CorruptIndexError                     index files
    │   └── ReportFormatError                     scan reports
    ├── HashListError               (ValueError)  a hash-list file could not be imported
    ├── StoreError                  (OSError)     the reference store failed
    ├── CalibrationError            (ValueError)  negatives cannot support a calibration
    └── MissingDependencyError      (ImportError) an optional extra is not installed
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

__all__ = [
    "CalibrationError",
    "CorruptIndexError",
    "FileFormatError",
    "HashListError",
    "HashmatchError",
    "ImageError",
    "ImageTooLargeError",
    "IncompatibleHashError",
    "IndexArgumentError",
    "InvalidHashError",
    "MissingDependencyError",
    "ReportFormatError",
    "StoreError",
    "UnknownAlgorithmError",
    "UnreadableImageError",
    "UsageError",
]


class HashmatchError(Exception):
    """Root of every error hashmatch raises on purpose."""


class UsageError(HashmatchError, ValueError):
    """A function or command was called with an argument it cannot use (out of range, unknown name)."""


class InvalidHashError(HashmatchError, ValueError):
    """A hash could not be parsed: wrong length, not hexadecimal, wrong shape."""


class IncompatibleHashError(HashmatchError, ValueError):
    """Two hashes or batches of different algorithms or bit lengths were combined."""


class UnknownAlgorithmError(HashmatchError, ValueError):
    """An algorithm name that the registry does not know."""


class IndexArgumentError(HashmatchError, ValueError):
    """An index was given ids or a max_distance it cannot use (wrong shape, type, range)."""


class ImageError(HashmatchError, ValueError):
    """An image could not be hashed."""


class UnreadableImageError(ImageError):
    """Truncated, empty, not an image, or a format or mode that cannot be decoded."""


class ImageTooLargeError(ImageError):
    """The image is over the configured pixel-count or file-size limit."""


class FileFormatError(HashmatchError, ValueError):
    """A file written by hashmatch is truncated, corrupt, of another version or kind."""


class CorruptIndexError(FileFormatError):
    """An index file failed a check on load."""


class ReportFormatError(FileFormatError):
    """A scan report could not be read back (for example to resume)."""


class HashListError(HashmatchError, ValueError):
    """A hash-list file could not be imported at all (bad header, unknown format)."""


class StoreError(HashmatchError, OSError):
    """The reference store could not be opened, read or written."""


class CalibrationError(HashmatchError, ValueError):
    """A calibration folder is missing or holds fewer than two readable images."""


class MissingDependencyError(HashmatchError, ImportError):
    """An optional extra is needed; the message says which to install."""


_HASH_LIKE = re.compile(r"[0-9a-fA-F]{8}|[A-Za-z0-9+/=_-]{20}")


def looks_like_hash(text: str) -> bool:
    """Whether ``text`` could hold a hash value: such text is never echoed in a message,
    since reference lists are sensitive."""
    return _HASH_LIKE.search(text) is not None


def unknown_algorithm(name: object, known: Iterable[str]) -> UnknownAlgorithmError:
    """The one wording for an algorithm name nobody knows, with a "did you mean" when close."""
    names = sorted(set(known))
    hint = ""
    if isinstance(name, str):
        close = difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.6)
        if close:
            hint = f"; did you mean {close[0]!r}?"
    if isinstance(name, str) and (looks_like_hash(name) or len(name) > 40):
        shown = "(a name withheld: it may be a hash)"
    else:
        shown = repr(name)
    return UnknownAlgorithmError(f"unknown algorithm {shown}{hint} (known: {', '.join(names) or 'none'})")
