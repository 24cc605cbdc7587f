"""Many independent fits at once: tasks run here or on Dask, each result stored as it finishes.

``run_tasks`` takes the tasks of a command (``hbm.tasks.Task``: a key and a call) and a store
folder. A task whose result is already in the store is not run again, so rerunning an
interrupted command finishes only what is missing. The others run

* in this process, one after another (``workers=1`` and no scheduler: no Dask at all);
* on a ``LocalCluster`` of ``workers`` processes (one task at a time each: PyTensor's and
  numba's compilation is not thread-safe, and each fit's chains use the worker's share of the
  cores); the on-disk compile caches of PyTensor (locked) and of nutpie's callbacks are shared;
* on an existing cluster (``scheduler="tcp://host:8786"``: ``dask scheduler`` and
  ``dask worker`` started by hand, or through dask-jobqueue on Slurm or PBS).

Every finished task's result is written atomically into the store as it arrives
(``<key>.pkl``, a pickle of the key, the run's fingerprint and the result). A worker that dies
mid-task is replaced and its task rerun by the scheduler; a task's seeds come from its key, so
the result is the same. The fingerprint is a hash of what the command computes (its settings);
a store holding another fingerprint's results is refused rather than mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hbm.errors import ArgumentError, HBMError, Interrupted
from hbm.interrupts import check
from hbm.results import io
from hbm.tasks import Task, check_keys

#: Times the scheduler reruns a task whose worker died before it gives up on it.
ALLOWED_FAILURES = 3


@dataclass(frozen=True)
class EngineConfig:
    """Where tasks run: ``workers`` local processes (1: this process), or ``scheduler``."""

    workers: int = 1
    scheduler: str | None = None

    @property
    def in_process(self) -> bool:
        """No Dask: one task after another in this process."""
        return self.scheduler is None and self.workers == 1

    def cores_per_fit(self) -> int | None:
        """Cores each fit's chains may use: this machine's share per local worker; ``None`` on
        an existing cluster (each worker process takes what it is given there)."""
        if self.scheduler is not None:
            return None
        return max(1, usable_cores() // self.workers)


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class TaskRun:
    """Every task's result by key; which keys ran now and which came from the store."""

    results: dict[str, Any]
    ran: tuple[str, ...]
    reused: tuple[str, ...]
    seconds: float
    where: str
    #: Seconds each task that ran now took inside its process (no scheduling or transfer).
    task_seconds: dict[str, float]

    def overhead_s(self, workers: int) -> float | None:
        """Mean seconds per task beyond its own work: scheduling, transfer, storing, start-up
        (``min(workers, tasks)`` x wall / tasks run - mean task seconds); ``None`` when none
        ran."""
        if not self.task_seconds:
            return None
        n = len(self.task_seconds)
        busy = min(workers, n)  # fewer tasks than workers: the others had none
        return busy * self.seconds / n - sum(self.task_seconds.values()) / n


def fingerprint(settings: dict[str, Any]) -> str:
    """SHA-256 of the settings' canonical JSON (dataclasses as their fields): what a store's
    results were computed with."""
    text = json.dumps(settings, sort_keys=True, default=_plain)
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def run_tasks(
    tasks: Sequence[Task],
    store: Path,
    settings: dict[str, Any],
    config: EngineConfig = EngineConfig(),
    say: Callable[[str], None] = lambda _msg: None,
    progressbar: bool = True,
) -> TaskRun:
    """Run the tasks missing from ``store`` (module doc); return every task's result.

    Parameters
    ----------
    tasks
        The command's tasks (unique keys).
    store
        Folder of finished results (made if absent).
    settings
        What the tasks compute (JSON-ready); their fingerprint guards the store.
    config
        Where tasks run.
    say
        Called with a line: where tasks run, the dashboard's address, what the store held.
    progressbar
        A bar of tasks done out of all, with the estimated time left.
    """
    check_keys(tasks)
    t0 = time.perf_counter()
    stamp = fingerprint(settings)
    results = _stored(tasks, store, stamp, say)
    missing = [t for t in tasks if t.key not in results]
    reused = tuple(t.key for t in tasks if t.key in results)
    if reused:
        say(f"{len(reused)} of {len(tasks)} tasks were done already ({store}); {len(missing)} run")
    where = "this process"
    seconds: dict[str, float] = {}
    bar = None
    try:
        if missing and config.in_process:
            bar = _bar(len(tasks), len(reused), progressbar)
            for task in missing:
                check()
                try:
                    value, took = _call(task)
                except Exception:
                    check()  # a library that caught the signal's exception raised its own
                    raise
                results[task.key] = _keep(store, stamp, task.key, value, took)
                seconds[task.key] = took
                bar.update()
        elif missing:
            with _client(config, say) as (client, where):
                bar = _bar(len(tasks), len(reused), progressbar)
                for key, (value, took) in _dask_results(client, missing):
                    results[key] = _keep(store, stamp, key, value, took)
                    seconds[key] = took
                    bar.update()
    except Interrupted as exc:
        stored = sum(_path(store, t.key).exists() for t in tasks)
        detail = (
            f"{stored} of {len(tasks)} tasks are stored in {store}; the same command runs the rest"
        )
        raise Interrupted(exc.signum, detail) from exc
    finally:
        if bar is not None:
            bar.close()
    return TaskRun(
        {t.key: results[t.key][0] for t in tasks},
        tuple(t.key for t in missing),
        reused,
        time.perf_counter() - t0,
        where,
        seconds,
    )


def _bar(total: int, done: int, shown: bool) -> Any:
    """Tasks done out of all, with the estimated time left."""
    return tqdm(total=total, initial=done, unit="task", disable=not shown)


def _path(store: Path, key: str) -> Path:
    return store / f"{key}.pkl"


def _keep(store: Path, stamp: str, key: str, value: Any, took: float) -> tuple[Any, float]:
    """Write one finished task's result and seconds atomically; return them."""
    record = {"key": key, "fingerprint": stamp, "value": value, "seconds": took}
    store.mkdir(parents=True, exist_ok=True)
    io.write_bytes(_path(store, key), pickle.dumps(record))
    return value, took


def _stored(
    tasks: Sequence[Task], store: Path, stamp: str, say: Callable[[str], None]
) -> dict[str, Any]:
    """The results of ``tasks`` already in the store; an unreadable one is run again."""
    found: dict[str, Any] = {}
    for task in tasks:
        path = _path(store, task.key)
        if not path.exists():
            continue
        try:
            record = pickle.loads(path.read_bytes())
            key, stored_stamp = record["key"], record["fingerprint"]
            value = (record["value"], float(record["seconds"]))
        except Exception as exc:  # a truncated or foreign file: the task runs again
            say(f"{path}: unreadable ({type(exc).__name__}); its task runs again")
            continue
        if key != task.key or stored_stamp != stamp:
            raise ArgumentError(
                f"{path}: a result of another run (other settings or inputs); give a new output "
                f"folder, or remove {store} to start over"
            )
        found[task.key] = value
    return found


#: One task at a time in a process, even on a worker given several threads: two fits compiling
#: at once in one process would share PyTensor's and numba's compilers, which are not
#: thread-safe.
_ONE_AT_A_TIME = threading.Lock()


def _call(task: Task) -> tuple[Any, float]:
    """The task's result and the seconds it took where it ran."""
    with _ONE_AT_A_TIME:
        t0 = time.perf_counter()
        value = task.run()
        return value, time.perf_counter() - t0


def _dask_results(client: Any, tasks: Sequence[Task]) -> Iterator[tuple[str, Any]]:
    """Submit every task; yield (key, result) as each finishes. A failed task raises."""
    from distributed import as_completed

    token = hashlib.sha256(os.urandom(16)).hexdigest()[:8]
    futures = {
        client.submit(_call, task, key=f"hbm-{task.key}-{token}", pure=False): task.key
        for task in tasks
    }
    try:
        for future in as_completed(futures, loop=client.loop):
            check()
            key = futures[future]
            if future.status == "error":
                exc = future.exception()
                raise HBMError(f"task {key} failed: {type(exc).__name__}: {exc}") from exc
            yield key, future.result()
    finally:
        for future in futures:
            future.cancel()


@contextmanager
def _client(config: EngineConfig, say: Callable[[str], None]) -> Iterator[tuple[Any, str]]:
    """A Dask client: of a new local cluster of worker processes, or of ``config.scheduler``."""
    import dask
    from distributed import Client, LocalCluster

    for name in ("distributed", "bokeh", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # a worker whose process died (killed, out of memory) is replaced and its task rerun; local
    # workers are not daemonic, so a task may run in a child process of its worker
    # (``hbm.inference.sbc.in_recycled_process``)
    settings = {
        "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
        "distributed.worker.daemon": False,
    }
    # set_as_default=False: tasks go to this client by name; a default client, which one that
    # fails to connect never unregisters, would take over every later dask computation
    # (xarray's netCDF writes)
    with dask.config.set(settings):
        if config.scheduler is not None:
            try:
                client = Client(config.scheduler, timeout="20s", set_as_default=False)
            except (OSError, TimeoutError, ValueError) as exc:
                raise ArgumentError(
                    f"--scheduler {config.scheduler}: no Dask scheduler answered there "
                    f"({type(exc).__name__}: {exc}); give an address like tcp://HOST:8786"
                ) from exc
            where = f"the Dask cluster at {config.scheduler}"
            cluster = None
        else:
            # the workers start with SIGINT ignored: Ctrl-C reaches the whole process group,
            # and it is this process that stops them (closing the cluster)
            main = threading.current_thread() is threading.main_thread()
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
            try:
                cluster = LocalCluster(
                    n_workers=config.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
            finally:
                if main:
                    signal.signal(signal.SIGINT, previous)
            client = Client(cluster, set_as_default=False)
            where = f"a local Dask cluster of {config.workers} worker processes"
        try:
            say(f"running tasks on {where}; dashboard {client.dashboard_link}")
            yield client, where
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
