"""Run a server under tracemalloc or cProfile, taking snapshots on signals, for bench/profile_idle.py.

Usage: ``python bench/profile_launcher.py MODE OUTPUT_DIR TARGET [ARGS...]``

- ``TARGET`` is ``wsguard`` (wsguard's CLI with ``ARGS``, as ``python -m wsguard ARGS`` runs it)
  or the path of a script (run as ``__main__`` with ``ARGS``, e.g. ``bench/bare_server.py``).
- ``MODE`` ``tracemalloc`` (``tracemalloc:FRAMES`` keeps FRAMES frames per allocation, 1 by
  default): tracing starts before the target is imported; each SIGUSR1 collects garbage and
  writes ``snapshot-N.pickle`` to ``OUTPUT_DIR`` (N counts from 1).
- ``MODE`` ``cprofile``: SIGUSR1 starts profiling, SIGUSR2 stops it and writes
  ``profile-N.pstats``, so that a profile covers only the window the caller chose.
- ``MODE`` ``gc``: SIGUSR1 starts counting the cyclic garbage collector's runs (a
  ``gc.callbacks`` hook), SIGUSR2 stops and writes ``gc-N.json``: per generation, the runs, the
  seconds they took and the objects they freed; and each full collection's start
  (``time.monotonic``) and seconds.

Each file is written under a temporary name and renamed, so that a caller polling for it never
reads half of one. It lives in bench/ and not in wsguard so that the server itself has no hooks
for this.
"""

from __future__ import annotations

import cProfile
import gc
import json
import os
import runpy
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import FrameType

Handler = Callable[[int, FrameType | None], None]


def publish(directory: Path, name: str, write: Callable[[str], None]) -> None:
    """Write a file through ``write(path)`` under a temporary name, then rename it to ``name``."""
    partial = directory / f".{name}.partial"
    write(str(partial))
    os.replace(partial, directory / name)


def tracemalloc_handlers(directory: Path, frames: int) -> dict[int, Handler]:
    tracemalloc.start(frames)
    taken = 0

    def snapshot(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        taken += 1
        gc.collect()
        publish(directory, f"snapshot-{taken}.pickle", tracemalloc.take_snapshot().dump)

    return {signal.SIGUSR1: snapshot}


def cprofile_handlers(directory: Path) -> dict[int, Handler]:
    profiler = cProfile.Profile()
    dumped = 0

    def start(signum: int, frame: FrameType | None) -> None:
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal dumped
        profiler.disable()
        dumped += 1
        publish(directory, f"profile-{dumped}.pstats", profiler.dump_stats)

    return {signal.SIGUSR1: start, signal.SIGUSR2: stop}


def gc_handlers(directory: Path) -> dict[int, Handler]:
    counts = [{"runs": 0, "seconds": 0.0, "freed": 0} for _ in range(3)]
    full: list[tuple[float, float]] = []
    """Each full collection: when it began (``time.monotonic``, which every process on the
    machine shares) and the seconds it took."""
    began = 0.0
    dumped = 0

    def hook(phase: str, info: dict[str, int]) -> None:
        nonlocal began
        if phase == "start":
            began = time.monotonic()
            return
        seconds = time.monotonic() - began
        generation = counts[info["generation"]]
        generation["runs"] += 1
        generation["seconds"] += seconds
        generation["freed"] += info["collected"]
        if info["generation"] == 2:
            full.append((began, seconds))

    def start(signum: int, frame: FrameType | None) -> None:
        for generation in counts:
            generation.update(runs=0, seconds=0.0, freed=0)
        full.clear()
        gc.callbacks.append(hook)

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal dumped
        gc.callbacks.remove(hook)
        dumped += 1
        text = json.dumps({"generations": counts, "full": full})

        def write(path: str) -> None:
            Path(path).write_text(text)

        publish(directory, f"gc-{dumped}.json", write)

    return {signal.SIGUSR1: start, signal.SIGUSR2: stop}


def run_target(target: str, args: list[str]) -> int:
    if target == "wsguard":
        from wsguard.cli import main

        return main(args)
    sys.argv = [target, *args]
    sys.path.insert(0, str(Path(target).resolve().parent))
    try:
        runpy.run_path(target, run_name="__main__")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0
    return 0


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode, output, target, *args = argv
    directory = Path(output)
    directory.mkdir(parents=True, exist_ok=True)
    kind, _, frames = mode.partition(":")
    if kind == "tracemalloc":
        handlers = tracemalloc_handlers(directory, int(frames or 1))
    elif kind == "cprofile":
        handlers = cprofile_handlers(directory)
    elif kind == "gc":
        handlers = gc_handlers(directory)
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    return run_target(target, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
