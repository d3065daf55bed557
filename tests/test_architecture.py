"""The rooms and arrows of ``../shared/DESIGN.md``, checked against the tree.

Every module's imports are read with ``ast`` (nothing is imported). Arrows point down
the rooms table only, also for imports inside functions and under ``TYPE_CHECKING``;
nothing inside the package imports the package root; the test-data tools import only
the public API and no room imports them; imports inside functions are only for the
optional or deliberately lazy dependencies listed here, each with its reason.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hashmatch"

# Bottom to top: a module may import its own room and the rooms before it. A module
# belongs to the room of the first entry that is its dotted path or a package above it.
ROOMS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("errors", "_version", "_csv", "_jit")),  # leaves every room shares
    ("hashes", ("hashes",)),
    ("loading", ("_loading", "_jpeg", "_jpeg_kernels")),
    ("hashers", ("hashers",)),
    ("index", ("index",)),
    ("local features", ("local",)),  # one floor with index; it builds on index's MIH
    ("store", ("_store", "_hashlists")),
    ("match", ("_query", "_match", "_matches", "_links", "_refindex", "_snapshots", "_local_stage", "_references")),
    ("scan", ("_scan", "_report", "_calibrate", "_calibrate_policy", "_calibrate_kernels", "_rematch")),
    ("service", ("service",)),  # the HTTP service (merged from another branch)
    ("cli", ("cli", "__main__")),
]
TESTING = "testing"

# (importing module, imported module) -> why it is imported inside a function.
LAZY_IMPORTS: dict[tuple[str, str], str] = {
    ("_scan._backends", "dask"): "optional extra [dask]",
    ("_scan._backends", "distributed"): "optional extra [dask]",
    ("local._opencv", "cv2"): "optional extra [local]",
    ("hashers.imagehash_compat", "scipy.fftpack"): "phash's median-tie path only; +0.17 s to import hashmatch",
    ("hashes", "imagehash"): "Hash.to_imagehash only; +0.11 s to import hashmatch",
    ("_jit", "numba"): "the one door to numba: imported on the first kernel call, not by import hashmatch",
    ("_jit", "numba.core"): "as numba",
    ("_jit", "numba.extending"): "as numba",
    ("_jit", "numba.np.arraymath"): "as numba (loaded before the first dispatch without its BLAS probe)",
    ("_jit", "llvmlite"): "as numba (CPU features for the kernel choice)",
    ("cli._scan", "tqdm"): "the progress bar, drawn only on a terminal; 25-40 ms of a scan's start-up",
    ("cli._serve", "uvicorn"): "optional extra [serve]",
    ("cli._serve", "service"): "optional extra [serve] (starlette, uvicorn)",
    ("service._metrics", "prometheus_client"): "its multiprocess mode, only with several workers",
}

# (importing room, imported module): the one door through the testing rule.
ROOM_IMPORTS_OF_TESTING = {("cli._synth", "testing.synthetic"): "`hashmatch synth` is the test-data tool's command"}


@dataclass(frozen=True)
class Import:
    module: str  # importer, dotted below the package ("_scan._run", "" for the root)
    target: str  # imported, dotted below the package, or an outside module ("numpy")
    internal: bool
    line: int
    in_function: bool


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _imports(path: Path) -> list[Import]:
    module, is_package = _module_name(path)
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = [p for p in package if p]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    in_function = {
        id(node)
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        for node in ast.walk(fn)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            targets = [(n.removeprefix("hashmatch").lstrip("."), True) if n.split(".")[0] == "hashmatch" else (n, False) for n in names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                if node.module:
                    targets = [(".".join([*base, node.module]), True)]
                else:  # `from .. import service` names a module; `from .. import X` a name of base
                    targets = [(".".join([*base, alias.name]) if _is_module([*base, alias.name]) else ".".join(base), True)
                               for alias in node.names]
            elif (node.module or "").split(".")[0] == "hashmatch":
                targets = [(node.module.removeprefix("hashmatch").lstrip("."), True)]  # type: ignore[union-attr]
            else:
                targets = [(node.module or "", False)]
        else:
            continue
        for target, internal in targets:
            found.append(Import(module, target, internal, node.lineno, id(node) in in_function))
    return found


def _is_module(parts: list[str]) -> bool:
    path = PACKAGE.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in _imports(path)]


def _room(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(ROOMS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                return rank
    return None


def _is_testing(module: str) -> bool:
    return module == TESTING or module.startswith(TESTING + ".")


def _is_public(module: str) -> bool:
    return not any(part.startswith("_") for part in module.split(".") if part)


def test_every_module_has_a_room() -> None:
    modules = {_module_name(p)[0] for p in PACKAGE.rglob("*.py")} - {""}
    homeless = sorted(m for m in modules if _room(m) is None and not _is_testing(m))
    assert homeless == [], f"add these modules to a room in ROOMS (and to DESIGN.md): {homeless}"


def test_arrows_point_down_the_rooms_table() -> None:
    upward = []
    for imp in _all_imports():
        if not imp.internal or imp.module == "" or _is_testing(imp.module) or _is_testing(imp.target):
            continue
        if imp.target == "":
            continue  # the package root: its own test
        source, target = _room(imp.module), _room(imp.target)
        if source is not None and target is not None and target > source:
            upward.append(f"{imp.module}:{imp.line} ({ROOMS[source][0]}) imports {imp.target} ({ROOMS[target][0]})")
    assert upward == []


def test_nothing_inside_the_package_imports_the_package_root() -> None:
    # The test-data tools are the exception by design: they use the public API, which is the root.
    offenders = [f"{i.module}:{i.line}" for i in _all_imports() if i.internal and i.target == "" and not _is_testing(i.module)]
    assert offenders == []


def test_testing_tools_import_only_the_public_api() -> None:
    private = [
        f"{i.module}:{i.line} imports hashmatch.{i.target}"
        for i in _all_imports()
        if _is_testing(i.module) and i.internal and not _is_testing(i.target) and not _is_public(i.target)
    ]
    assert private == []


def test_no_room_imports_the_testing_tools() -> None:
    offenders = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in _all_imports()
        if i.internal and _is_testing(i.target) and not _is_testing(i.module)
        and (i.module, i.target) not in ROOM_IMPORTS_OF_TESTING
    ]
    assert offenders == []


def test_function_level_imports_are_only_the_listed_lazy_ones() -> None:
    found = {(i.module, i.target): i.line for i in _all_imports() if i.in_function}
    unexpected = sorted(f"{m}:{line} imports {t or 'hashmatch'}" for (m, t), line in found.items() if (m, t) not in LAZY_IMPORTS)
    assert unexpected == [], "import at the top, or list an optional dependency in LAZY_IMPORTS with its reason"
    stale = sorted(set(LAZY_IMPORTS) - set(found))
    assert stale == [], f"no longer imported lazily; drop from LAZY_IMPORTS: {stale}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..index import Index\n", [("index", True)]),
        ("from . import _kernels\n", [("_scan", True)]),
        ("from .. import trim_borders\n", [("", True)]),
        ("import numpy\nfrom hashmatch._store import X\n", [("numpy", False), ("_store", True)]),
        ("def f():\n    import cv2\n", [("cv2", False)]),
    ],
)
def test_import_reader_resolves_relative_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 source: str, expected: list[tuple[str, bool]]) -> None:
    # The reader itself must be right, or the checks above pass vacuously.
    package = tmp_path / "hashmatch" / "_scan"
    package.mkdir(parents=True)
    path = package / "_run.py"
    path.write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "hashmatch")
    assert [(i.target, i.internal) for i in _imports(path)] == expected
    assert all(i.in_function == source.startswith("def") for i in _imports(path))
