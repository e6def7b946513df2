"""Many images in one run: folders walked in a stable order, outputs that mirror the input tree,
shards (Slurm job arrays included) and a process pool over inputs.

Torch-free, so the command line plans a whole batch from here before any slow import::

    from otmap_cli.batch import plan_folder, run_each
    pairs = plan_folder("frames", "graded", recursive=True)      # [(frames/a/0001.png, graded/a/0001.png), ...]
    for (source, target), outcome in zip(pairs, run_each(grade, pairs, workers=2)): ...
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Optional, TypeVar

from otmap_cli.choices import IMAGE_SUFFIXES
from otmap_cli.errors import InputError, OtmapError

T = TypeVar("T")
R = TypeVar("R")
SLURM = "SLURM_ARRAY_TASK_"


def find_images(folder: Path | str, recursive: bool = False, exclude: Iterable[Path | str] = ()) -> list[Path]:
    """The image files of ``folder`` (suffixes of :data:`~otmap_cli.choices.IMAGE_SUFFIXES`, any letter
    case), sorted by their path relative to it, so every run and every shard sees the same order.

    Hidden files and folders (name starting with '.', e.g. the ``.part`` files of unfinished writes)
    are skipped; so are the folders in ``exclude`` (an output folder inside the input tree)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    skip = {Path(p).resolve() for p in exclude}
    found = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if recursive and not d.startswith(".")
                   and (Path(top) / d).resolve() not in skip]
        found += [Path(top) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
                  and (Path(top) / f).is_file()]
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def expand_inputs(inputs: Iterable[Path | str], recursive: bool = False,
                  exclude: Iterable[Path | str] = ()) -> list[tuple[Path, Optional[Path]]]:
    """Each input as ``(file, None)``, each folder replaced by its images as ``(image, folder)``, in the
    order given; a folder without images is an InputError (it is almost always a wrong path)."""
    expanded: list[tuple[Path, Optional[Path]]] = []
    exclude = list(exclude)
    for item in map(Path, inputs):
        if not item.is_dir():
            expanded.append((item, None))
            continue
        images = find_images(item, recursive, exclude)
        if not images:
            where = "in it or its subfolders" if recursive else "at its top level (--recursive enters subfolders)"
            raise InputError(f"{item}: no images {where}; otmap reads {', '.join(IMAGE_SUFFIXES)}")
        expanded += [(image, item) for image in images]
    return expanded


def mirrored_output(image: Path, root: Path, out_dir: Path, name: Optional[str] = None) -> Path:
    """Where the output of ``image`` (found under ``root``) goes: the same relative path under ``out_dir``,
    with the file name from the template ``name`` ({stem}) if given, else the image's own name."""
    relative = Path(image).relative_to(root)
    return Path(out_dir) / relative.parent / (name.format(stem=relative.stem) if name else relative.name)


def plan_folder(folder: Path | str, out_dir: Path | str, recursive: bool = False,
                name: Optional[str] = None) -> list[tuple[Path, Path]]:
    """``(input, output)`` for every image of ``folder``, outputs mirroring its tree under ``out_dir``."""
    folder, out_dir = Path(folder), Path(out_dir)
    return [(image, mirrored_output(image, folder, out_dir, name))
            for image in find_images(folder, recursive, exclude=[out_dir])]


def slurm_shard(environ: Optional[Mapping[str, str]] = None) -> tuple[int, int]:
    """``(I, N)`` (1-based) of this task of a Slurm job array, from SLURM_ARRAY_TASK_ID, _MIN, _STEP and
    _COUNT (or _MAX when _COUNT is missing), so ``--array=0-7``, ``1-8`` and ``0-14:2`` all give N = 8."""
    env = os.environ if environ is None else environ
    if f"{SLURM}ID" not in env:
        raise InputError("--shard auto: SLURM_ARRAY_TASK_ID is not set, so this is not a task of a Slurm job array "
                         "(sbatch --array=1-N); give --shard I/N instead")
    try:
        task, low, step = (int(env.get(SLURM + key, default)) for key, default in
                           (("ID", None), ("MIN", "0"), ("STEP", "1")))
        count = int(env[SLURM + "COUNT"]) if SLURM + "COUNT" in env else None
        high = int(env[SLURM + "MAX"]) if SLURM + "MAX" in env else None
    except ValueError:
        raise InputError("--shard auto: the SLURM_ARRAY_TASK_* variables are not integers: "
                         + ", ".join(f"{k}={v}" for k, v in env.items() if k.startswith(SLURM))) from None
    span = (high - low) // step + 1 if high is not None and step > 0 else None
    count = count if count is not None else span
    if count is None:
        raise InputError("--shard auto: neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX is set; "
                         "give --shard I/N instead")
    offset = task - low
    if step < 1 or offset % step or not 0 <= offset // step < count or (span is not None and span != count):
        raise InputError(f"--shard auto: array task {task} is not one of a range of {count} tasks from {low} by "
                         f"{step}; use a plain range (sbatch --array=1-N, optionally %LIMIT) or --shard I/N")
    return offset // step + 1, count


def parse_shard(text: str, environ: Optional[Mapping[str, str]] = None) -> tuple[int, int]:
    """``(I, N)`` of ``--shard I/N`` or ``--shard auto`` (a Slurm array task, see :func:`slurm_shard`)."""
    if text == "auto":
        return slurm_shard(environ)
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must look like I/N (e.g. 2/8) or be 'auto' (Slurm array), got {text!r}") from None
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {text}: need 1 <= I <= N")
    return index, count


def take_shard(items: list[T], index: int, count: int) -> list[T]:
    """Every ``count``-th item from the ``index``-th (1-based): the N shards partition the list, and
    consecutive frames spread over all of them (balanced when costs drift along a sequence)."""
    return items[index - 1::count]


# --- the process pool ---------------------------------------------------------------------------------------
_WORK: Optional[Callable] = None  # set before the fork: a closure needs no pickling to reach the workers
_BUSY = False


def _on_signal(signum, _frame) -> None:
    """In a worker: unwind the current item (its ``finally`` blocks remove part files), or leave at once."""
    from otmap_cli.errors import Interrupted

    if _BUSY:
        raise Interrupted(signum)
    os._exit(128 + signum)


def _start_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"  # for a torch imported later in this process
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)  # N workers x 1 thread: no oversubscription
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def _call(item):
    global _BUSY
    _BUSY = True
    try:
        return _WORK(item)
    except OtmapError as exc:
        return exc
    except KeyboardInterrupt:
        os._exit(130)  # the item's cleanup has run; a traceback per worker would only be noise
    finally:
        _BUSY = False


def run_each(work: Callable[[T], R], items: list[T], workers: int = 1) -> Iterator[R | OtmapError]:
    """``work(item)`` for each item, yielded in the items' order; an :class:`OtmapError` is yielded in
    place of the result (the caller decides whether to go on), any other exception is raised.

    ``workers`` > 1 runs a pool of forked processes, one torch thread each. Closing the iterator early
    (a stop at an error, Ctrl-C, SIGTERM) stops the workers; each unwinds its item, so files written
    through :func:`otmap_cli.io.atomic_output` are complete or absent, never partial.
    """
    if workers < 1:
        raise InputError(f"-j/--workers must be at least 1, got {workers}")
    if workers == 1 or len(items) <= 1:
        for item in items:
            try:
                yield work(item)
            except OtmapError as exc:
                yield exc
        return
    yield from _pooled(work, items, workers)


def _pooled(work, items, workers):
    global _WORK
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    if "fork" not in multiprocessing.get_all_start_methods():
        raise InputError("-j/--workers needs fork() (Linux); run several processes with --shard I/N instead")
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise InputError("-j/--workers runs CPU processes and CUDA is in use; on GPUs run one process per GPU "
                         "(CUDA_VISIBLE_DEVICES=k otmap ... --shard k+1/N)")
    previous, _WORK = _WORK, work
    pool = ProcessPoolExecutor(min(workers, len(items)), mp_context=multiprocessing.get_context("fork"),
                               initializer=_start_worker)
    futures, finished = [], False
    try:
        futures += [pool.submit(_call, item) for item in items]
        for index, (item, future) in enumerate(zip(items, futures)):
            try:
                outcome = future.result()
            except BrokenProcessPool:
                outcome = OtmapError(f"{item}: a worker process died (killed, or out of memory?); the items it "
                                     "had are not done")
            finished = index == len(items) - 1  # all done: a caller that stops here needs no terminate
            yield outcome
    finally:
        _WORK = previous
        if not finished:
            for future in futures:
                future.cancel()
            processes = list((getattr(pool, "_processes", None) or {}).values())
            for process in processes:
                process.terminate()  # SIGTERM: the worker unwinds its item (see _on_signal)
            for process in processes:
                process.join(10)
                if process.is_alive():  # stuck where it cannot unwind: no wait on it at shutdown
                    process.kill()
                    process.join()
        pool.shutdown(wait=True, cancel_futures=not finished)
