"""The crash-isolating scheduler: keep a backend busy, find the file that kills a worker.

Files go out in small chunks. When a worker dies, every chunk in flight with it fails;
their files are then retried one at a time, alone, so the file that crashes its worker
alone is the culprit and only it becomes a ``worker_crashed`` result (``timeout`` when
its worker was stopped because the file took too long). Workers that die
before hashing anything are a start-up failure (usually a script without a
``__main__`` guard), not bad files, and stop the scan with one clear error.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import HashmatchError
from ._backends import Backend, CrashedChunk, TimedOut
from ._worker import Chunk, Raw

__all__ = ["Failed", "guided_chunks", "schedule", "schedule_chunks"]

SMALLEST = 4
"""The smallest chunk :func:`guided_chunks` makes (but for the last one)."""

STARTUP_CRASHES = 3
"""This many files crashing workers before any success means workers cannot start."""


@dataclass(frozen=True, slots=True)
class Failed:
    """A file the scheduler gave up on, with the scan's error kind and a message."""

    path: str
    size: int
    mtime_ns: int
    kind: str
    message: str


def guided_chunks(files: list[tuple[str, int, int]], largest: int, ways: int) -> list[Chunk]:
    """Chunks of a share of what is left (``1/(4*ways)`` of it, at most ``largest``,
    at least :data:`SMALLEST`): large while much is left, so few round trips, then
    smaller and smaller, so the workers run out of files at about the same time."""
    out: list[Chunk] = []
    i, n = 0, len(files)
    while i < n:
        size = max(SMALLEST, min(largest, (n - i) // (4 * max(1, ways))))
        out.append(files[i : i + size])
        i += size
    return out


def schedule(
    files: list[tuple[str, int, int]] | list[Chunk], backend: Backend, chunk_size: int | None = None
) -> Iterator[tuple[tuple[str, int, int], Raw] | Failed]:
    """Hash ``files`` on ``backend``; yield each file's raw reply, or why it failed.

    ``files`` are cut into chunks of ``chunk_size``, or, without one, are chunks already
    (:func:`guided_chunks`). Results come in completion order. The backend is not closed here.
    """
    for outcome in schedule_chunks(files, backend, chunk_size):
        if isinstance(outcome, Failed):
            yield outcome
        else:
            yield from zip(*outcome)


def schedule_chunks(
    files: list[tuple[str, int, int]] | list[Chunk], backend: Backend, chunk_size: int | None = None
) -> Iterator[tuple[Chunk, list[Raw]] | Failed]:
    """:func:`schedule`, with the replies of a chunk that a worker finished yielded
    together (its files, their replies), so the caller can match them in one batch."""
    if chunk_size is not None:
        files = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]  # type: ignore[misc]
    chunks: deque[Chunk] = deque(files)  # type: ignore[arg-type]
    suspects: deque[Chunk] = deque()  # files of crashed chunks, retried one at a time
    isolated = False  # the single chunk in flight is a suspect running alone
    crashed: list[Failed] = []  # culprits, reported once some worker has succeeded
    any_hashed = False
    in_flight = 0
    while chunks or suspects or in_flight:
        if suspects:
            if in_flight == 0:
                backend.submit(suspects.popleft())
                in_flight, isolated = 1, True
        else:
            isolated = False
            while chunks and in_flight < backend.capacity:
                backend.submit(chunks.popleft())
                in_flight += 1
        chunk, outcome = backend.next_done()
        in_flight -= 1
        if isinstance(outcome, CrashedChunk):
            if isolated and isinstance(outcome, TimedOut):  # it hung alone: this file is the culprit
                path, size, mtime_ns = chunk[0]
                yield Failed(path, size, mtime_ns, "timeout", f"{outcome}; its worker was stopped")
            elif isolated:  # it crashed its worker alone: this file is the culprit
                path, size, mtime_ns = chunk[0]
                message = "the worker process died while hashing this file"
                crashed.append(Failed(path, size, mtime_ns, "worker_crashed", message))
                if not any_hashed and len(crashed) >= STARTUP_CRASHES:
                    raise HashmatchError(
                        "scan worker processes die at start-up; when calling hashmatch.scan "
                        "from a script, run it under `if __name__ == '__main__':` "
                        f"(first error: {outcome})"
                    )
                if any_hashed:
                    yield from crashed
                    crashed.clear()
            else:  # every chunk in flight failed with it; find the culprit one by one
                suspects.extend([item] for item in chunk)
            if in_flight == 0:
                backend.restart()
            continue
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):  # an interrupt, not a fault of these files
                raise outcome
            message = f"{type(outcome).__name__}: {outcome}"
            for path, size, mtime_ns in chunk:
                yield Failed(path, size, mtime_ns, "internal_error", message)
            continue
        any_hashed = True
        yield from crashed  # confirmed: workers do run, these files killed theirs
        crashed.clear()
        yield chunk, outcome
    yield from crashed  # too few to call it a start-up failure
