"""Coverage-guided fuzzing with atheris (``make fuzz``): image loading, hash-list import
and index files, from raw bytes. Any exception that is not a HashmatchError is a crash.

    python tests/fuzz_atheris.py -atheris_runs=200000 [corpus_dir]

atheris instruments hashmatch's Python code (Pillow's C decoders are not instrumented,
so the hypothesis properties in tests/test_fuzz.py, which start from valid files of
every format, stay the main image fuzzer). Needs ``pip install 'hashmatch[fuzz]'``.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile

import atheris

# numba compiles the kernels from their bytecode: instrumented bytecode does not compile.
_KERNELS = ["hashmatch.hashers._kernels", "hashmatch.hashers._pdq_kernels", "hashmatch.index._kernels",
            "hashmatch._calibrate_kernels", "numba", "numpy", "PIL", "llvmlite", "scipy", "pywt"]

with atheris.instrument_imports(include=["hashmatch"], exclude=_KERNELS):
    import hashmatch
    from hashmatch.errors import HashmatchError
    from hashmatch.index import load_index
    from hashmatch._hashlists import read_hashlist

_ALGORITHMS = ("ahash", "dhash", "phash", "whash", "pdq")
_TMP = tempfile.mkdtemp(prefix="hm-atheris-")
_INDEX = os.path.join(_TMP, "x.hmidx")


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    target, rest = data[0] % 3, data[1:]
    try:
        if target == 0:
            hashmatch.hash_image(rest, _ALGORITHMS[data[1] % len(_ALGORITHMS)])
        elif target == 1:
            text = rest.decode("utf-8", "replace")
            for _ in read_hashlist(io.StringIO(text), algorithm=(None, "phash", "pdq")[data[1] % 3]):
                pass
        else:
            with open(_INDEX, "wb") as f:
                f.write(b"\x89HMIDX\r\n" + rest)
            load_index(_INDEX)
    except HashmatchError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
