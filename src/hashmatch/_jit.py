"""The one place that imports numba, decides its disk cache and loads kernel modules.

``import hashmatch`` must stay fast and must work on a read-only install, so:

- Kernel modules (``*_kernels.py``) are imported on first use through :func:`kernels`,
  which returns a stand-in that imports the real module on its first attribute access.
  numba itself is imported only then.
- Kernel modules decorate with this module's :func:`njit` (same arguments as numba's).
  When numba finds no writable place for its cache (read-only package, no writable
  HOME, no ``NUMBA_CACHE_DIR``) it would raise "cannot cache function ... no locator
  available" at decoration, i.e. at import. Here that falls back to a per-user
  directory under the system temp dir, and if even that cannot be written, to no disk
  cache, with one ``RuntimeWarning`` saying which and how to fix it.
- The first kernel that really compiles (not loaded from the cache) in a process says
  so once on stderr, with the expected time; ``hashmatch warmup`` compiles everything
  ahead of time (e.g. while building a container image, with ``NUMBA_CACHE_DIR`` set).
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "announce_compile",
    "cache_mode",
    "cached",
    "compile_seconds",
    "kernels",
    "lazy_import",
    "load_numba_runtime",
    "load_word",
    "njit",
    "prefetch",
    "store_word",
    "target_cpu",
    "target_features",
    "vector_popcount",
    "wide_vectors",
]

_lock = threading.RLock()
_cache_mode: str | None = None  # "default", "temp:<dir>" or "none"; decided once
_announced = False
_announce_lock = threading.Lock()  # not _lock: the compile listener runs under numba's compiler lock

# CPU seconds to compile a kernel family's first-call kernels from an empty cache on the
# AMD EPYC VM of notes/issue-14-scan.md (benchmarks/compile_times.py, summed per module at
# load ~1: imagehash kernels 2.8 s, PDQ 4.6 s, index range queries 1.4 s, the local
# stage's parallel shortlist 1.9 s). A command that knows what it will compile says so
# with :func:`announce_compile`; otherwise the line shows the family that compiles first.
_COMPILE_SECONDS = {
    "hashmatch.hashers._kernels": 3.0,
    "hashmatch.hashers._pdq_kernels": 5.0,
    "hashmatch.index._kernels": 1.5,
    "hashmatch.index._kernels:parallel": 2.0,
    "hashmatch.index._sliced_kernels": 2.5,  # Flat's bit-sliced scan (copy + query; 2.3 s, notes/issue-14-flat.md)
    "hashmatch.index._kernels:all": 20.0,  # every index kind, serial and parallel (`hashmatch warmup`)
    "hashmatch._calibrate_kernels": 2.0,
    "hashmatch.local._kernels": 8.0,  # the local stage's descriptor tables (notes/issue-12-latency.md)
    "hashmatch._jpeg_kernels": 8.0,  # the DC-only decoder of PDQ's fast path (measured 7.9 s in all)
}


def compile_seconds(family: str) -> float:
    """Expected CPU seconds to compile ``family`` (a kernel module's dotted name, or
    ``"<module>:parallel"`` for its numba-parallel kernels) from an empty cache."""
    return _COMPILE_SECONDS.get(family, 10.0)


class _LazyModule:
    """Imports ``name`` on first attribute access; later accesses hit ``__dict__``."""

    def __init__(self, name: str, *, kernel_module: bool = False) -> None:
        self.__dict__["_lazy_name"] = name
        self.__dict__["_kernel_module"] = kernel_module

    def __getattr__(self, attr: str) -> Any:
        if self.__dict__["_kernel_module"]:  # a kernel is about to run: numba's first dispatch
            load_numba_runtime()
        module = importlib.import_module(self.__dict__["_lazy_name"])
        value = getattr(module, attr)
        if not isinstance(value, ModuleType):  # cache the kernel so the next lookup is plain
            self.__dict__[attr] = value
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_name']!r}>"


def kernels(name: str) -> Any:
    """A stand-in for kernel module ``name`` that imports it (and numba, with
    :func:`load_numba_runtime`) on first use."""
    return _LazyModule(name, kernel_module=True)


def lazy_import(name: str) -> Any:
    """A stand-in for a heavy dependency (PyWavelets, SciPy) that imports it on first
    use, so ``import hashmatch`` and ``hashmatch --version`` stay fast."""
    return _LazyModule(name)


def cache_mode() -> str:
    """Where this process caches compiled kernels, in words (for ``hashmatch warmup``)."""
    if _cache_mode == "none":
        return "none (not cached)"
    if _cache_mode is not None:
        return _cache_mode.removeprefix("temp:") + " (temporary fallback)"
    numba = sys.modules.get("numba")
    if numba is not None and numba.config.CACHE_DIR:
        return numba.config.CACHE_DIR
    return "numba's default (beside the package, else the user cache)"


def _temp_cache_dir() -> str | None:
    """A per-user cache folder under the temp dir, reused across processes, or None.

    numba's cache files are pickles, so loading them from a folder someone else could
    write would run their code: the folder must be a real directory owned by this user
    and writable by no one else. If it is not, a fresh private folder (not reused) is
    used instead.
    """
    base = tempfile.gettempdir()
    try:
        if hasattr(os, "getuid"):
            path = os.path.join(base, f"hashmatch-numba-cache-{os.getuid()}")
            os.makedirs(path, mode=0o700, exist_ok=True)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022:
                with tempfile.TemporaryFile(dir=path):
                    pass
                return path
        return tempfile.mkdtemp(prefix="hashmatch-numba-cache-")
    except OSError:
        return None


def _fallback(numba: ModuleType, reason: str) -> None:
    """Called once when numba has no usable cache location: temp dir, else no cache."""
    global _cache_mode
    path = _temp_cache_dir()
    if path is not None:
        numba.config.CACHE_DIR = path
        _cache_mode = f"temp:{path}"
        where = f"caching them in {path}"
    else:
        _cache_mode = "none"
        where = "not caching them (every process compiles on first use)"
    warnings.warn(
        f"hashmatch: numba cannot cache compiled kernels here ({reason}); {where}. "
        "Set NUMBA_CACHE_DIR to a writable directory and run `hashmatch warmup` once to avoid this.",
        RuntimeWarning,
        stacklevel=2,
    )


def _announce_compile() -> None:
    from numba.core import event

    class _FirstCompile(event.Listener):
        def on_start(self, ev: Any) -> None:
            if _announced:
                return
            dispatcher = (ev.data or {}).get("dispatcher")
            module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
            if not module.startswith("hashmatch."):
                return
            announce_compile(compile_seconds(module))

        def on_end(self, ev: Any) -> None:
            pass

    event.register("numba:compile", _FirstCompile())


def announce_compile(seconds: float) -> None:
    """Say once per process, on stderr, that kernels are compiling and for how long
    (a command that knows what it will compile calls this itself, before it starts)."""
    global _announced
    with _announce_lock:
        if _announced:
            return
        _announced = True
    print(f"hashmatch: compiling kernels, first run only, ~{max(1, round(seconds))} s", file=sys.stderr, flush=True)


def cached(module: str, name: str) -> bool:
    """Whether numba's disk cache holds kernel ``module.name`` compiled for this CPU
    (so a first call loads it rather than compiling it). Also True when the JIT is off;
    False when numba's cache cannot say (it is read through numba internals, so any
    surprise there means "not known to be cached")."""
    numba = _numba()
    if numba.config.DISABLE_JIT:
        return True
    try:
        kernel = getattr(importlib.import_module(module), name)
        index = kernel._cache._cache_file._load_index()
        magic = kernel.targetctx.codegen().magic_tuple()
        return any(key[1] == magic for key in index)
    except Exception:  # numba internals moved: assume it compiles
        return False


_numba_ready = False
_runtime_ready = False
_BLAS_PROBE = "scipy.linalg.cython_blas"


class _DeferredBlasCheck:
    """numba's ``numba.np.arraymath._HAVE_BLAS``, probed when first read (numba reads it
    as ``if not _HAVE_BLAS`` while compiling ``np.convolve``/``np.correlate``)."""

    def __init__(self, check: Callable[[], bool]) -> None:
        self._check = check
        self._answer: bool | None = None

    def __bool__(self) -> bool:
        if self._answer is None:
            self._answer = bool(self._check())
        return self._answer


def load_numba_runtime() -> None:
    """Import numba and the array support its first dispatch in a process loads, without
    numba's import-time BLAS probe.

    The first kernel call in a process imports ``numba.np.arraymath``, whose import runs
    ``_HAVE_BLAS = _check_blas()``: ``import scipy.linalg.cython_blas``, about 0.1 s of
    CPU plus an OpenBLAS thread pool spinning another ~0.1 s (notes/issue-14-scan.md,
    round 7), on the serial start-up of every scan, though no hashmatch kernel uses BLAS.
    numba reads that answer only when it compiles ``np.convolve``/``np.correlate`` on
    floats (``np.dot`` and ``np.linalg`` check for themselves when compiled). So here the
    probe fails during that one import (SciPy's module hidden in ``sys.modules``, then
    restored) and its answer is replaced by one computed on first read: the same answer,
    only later. Done only with one Python thread alive (``sys.modules`` is shared) and
    when neither module is imported yet; otherwise numba loads as it always does.
    """
    global _runtime_ready
    if _runtime_ready:
        return
    with _lock:
        if _runtime_ready:
            return
        _numba()
        _runtime_ready = True
        if "numba.np.arraymath" in sys.modules or _BLAS_PROBE in sys.modules or threading.active_count() > 1:
            return
        sys.modules[_BLAS_PROBE] = None  # type: ignore[assignment]
        try:
            import numba.np.arraymath as arraymath
        finally:
            if _BLAS_PROBE in sys.modules and sys.modules[_BLAS_PROBE] is None:
                del sys.modules[_BLAS_PROBE]
        check = getattr(arraymath, "_check_blas", None)
        if getattr(arraymath, "_HAVE_BLAS", None) is False and callable(check):  # the hidden probe's answer
            arraymath._HAVE_BLAS = _DeferredBlasCheck(check)


def _numba() -> ModuleType:
    global _numba_ready
    import numba

    if not _numba_ready:
        with _lock:
            if not _numba_ready:
                _announce_compile()
                _numba_ready = True
    return numba


def njit(*, cache: bool = True, nogil: bool = True, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """numba's ``njit`` (same arguments) that never fails for want of a cache location."""
    numba = _numba()
    options["nogil"] = nogil

    def decorate(func: Callable[..., Any]) -> Any:
        with _lock:
            if cache and _cache_mode != "none":
                try:
                    return numba.njit(cache=True, **options)(func)
                except RuntimeError as exc:
                    if "no locator available" not in str(exc):
                        raise
                    if _cache_mode is None:  # first time: pick the temp dir (or none), retry
                        _fallback(numba, "no writable cache directory")
                        return decorate(func)
            return numba.njit(cache=False, **options)(func)

    return decorate


_features: frozenset[str] | None = None


def target_features() -> frozenset[str]:
    """The CPU features numba compiles for in this process (LLVM names, e.g. ``avx2``).

    The host's, unless ``NUMBA_CPU_FEATURES`` names others (as when compiling for
    another CPU). Read at run time, so one install serves every machine.
    """
    global _features
    if _features is None:
        numba = _numba()
        if numba.config.CPU_FEATURES:
            names = numba.config.CPU_FEATURES.split(",")
            _features = frozenset(f[1:] for f in names if f.startswith("+"))
        else:
            from llvmlite import binding

            _features = frozenset(k for k, on in binding.get_host_cpu_features().items() if on)
    return _features


def vector_popcount() -> bool:
    """Whether kernels get a one-instruction vector popcount (AVX-512 VPOPCNTDQ)."""
    return "avx512vpopcntdq" in target_features()


def target_cpu() -> str:
    """The CPU name numba compiles for (LLVM's, e.g. ``znver5``): ``NUMBA_CPU_NAME``, else the host's."""
    numba = _numba()
    if numba.config.CPU_NAME:
        return str(numba.config.CPU_NAME)
    from llvmlite import binding

    return str(binding.get_host_cpu_name())


def wide_vectors() -> bool:
    """Whether LLVM vectorises loops with 512-bit registers for this CPU.

    With AVX-512 it does so for AMD Zen 4 and 5 (``znver4``, ``znver5``); for Intel's
    AVX-512 CPUs its tuning prefers 256-bit registers (frequency), so a row-order
    ``vpopcntq`` loop does half the work per instruction there (benchmarks/check_asm.py
    shows which registers each build uses).
    """
    return "avx512f" in target_features() and target_cpu().startswith("znver")


def _make_prefetch() -> Any:
    """``prefetch(array, i)``: ask the CPU to fetch ``array[i]``'s cache line (LLVM's
    ``llvm.prefetch``, read, keep in all levels); numba has no such function. A no-op
    when the JIT is off. No bounds check: callers pass valid indices."""
    numba = _numba()
    if numba.config.DISABLE_JIT:
        return lambda array, i: None
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx: Any, array: Any, index: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return numba.types.void(array, index), codegen

    return prefetch


def _make_words() -> tuple[Any, Any]:
    """``load_word(array, i)`` and ``store_word(array, i, value)``: bytes ``i .. i + 7``
    of a uint8 array as one little-endian uint64, read or written with a single
    unaligned 8-byte access. Built from eight byte accesses, numba's code merged only
    some of them (two-byte moves in the assembly, notes/issue-14-pdq.md round 7). No
    bounds check: callers pass ``i + 8 <= len(array)``. Plain Python when the JIT is off."""
    numba = _numba()
    if numba.config.DISABLE_JIT:

        def load_py(array: Any, i: Any) -> Any:
            return np.uint64(int.from_bytes(bytes(array[int(i) : int(i) + 8]), "little"))

        def store_py(array: Any, i: Any, value: Any) -> None:
            array[int(i) : int(i) + 8] = np.frombuffer(int(value).to_bytes(8, "little"), dtype=np.uint8)

        return load_py, store_py
    from llvmlite import ir
    from numba.core import cgutils
    from numba.extending import intrinsic

    def pointer(context: Any, builder: Any, aryty: Any, array: Any, index: Any) -> Any:
        ary = context.make_array(aryty)(context, builder, array)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [index], wraparound=False)
        return builder.bitcast(ptr, ir.IntType(64).as_pointer())

    @intrinsic
    def load_word(typingctx: Any, array: Any, index: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.load(pointer(context, builder, signature.args[0], args[0], args[1]), align=1)

        return numba.types.uint64(array, index), codegen

    @intrinsic
    def store_word(typingctx: Any, array: Any, index: Any, value: Any) -> Any:
        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            word = context.cast(builder, args[2], signature.args[2], numba.types.uint64)
            builder.store(word, pointer(context, builder, signature.args[0], args[0], args[1]), align=1)
            return context.get_dummy_value()

        return numba.types.void(array, index, value), codegen

    return load_word, store_word


def __getattr__(name: str) -> Any:  # built on first use: they need numba
    if name == "prefetch":
        value = _make_prefetch()
        globals()["prefetch"] = value
        return value
    if name in ("load_word", "store_word"):
        load, store = _make_words()
        globals().update(load_word=load, store_word=store)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
