"""The task engine: results by key, stored as they finish, reruns that do only what is missing,
the same results in this process and on Dask worker processes."""

from __future__ import annotations

import os
import pickle
import zlib

import numpy as np
import pytest

from hbm.app.engine import EngineConfig, fingerprint, run_tasks
from hbm.errors import ArgumentError, HBMError
from hbm.evaluation.compare import fit_seed
from hbm.tasks import Task, run_serial, task_seed

SETTINGS = {"command": "test", "n": 5}


def draw(key: str, seed: int) -> dict:
    """A task: draws from its own seed, and says which process ran it."""
    return {"key": key, "x": np.random.default_rng(seed).normal(size=3), "pid": os.getpid()}


def fail(message: str) -> None:
    raise RuntimeError(message)


def _tasks(n: int = 5) -> list[Task]:
    return [Task(f"t-{i}", draw, (f"t-{i}", task_seed(7, "t", i))) for i in range(n)]


def _values(results: dict) -> dict:
    return {k: v["x"].tolist() for k, v in results.items()}


def test_task_seeds_come_from_the_identity_alone():
    assert task_seed(1, "hbm", 0) == zlib.crc32(b"1/hbm/0")
    assert fit_seed(1, "hbm", 0) == task_seed(1, "hbm", 0)  # compare's seeds did not change
    assert task_seed(1, "hbm", 0) != task_seed(1, "hbm", 1)


def test_keys_must_be_file_names_and_unique(tmp_path):
    with pytest.raises(ValueError, match="must match"):
        Task("../escape", draw)
    with pytest.raises(ValueError, match="repeated: a"):
        run_serial([Task("a", draw, ("a", 1)), Task("a", draw, ("a", 2))])
    with pytest.raises(ValueError, match="repeated"):
        run_tasks([Task("a", draw, ("a", 1))] * 2, tmp_path, SETTINGS, progressbar=False)


def test_in_process_results_are_stored_and_a_rerun_runs_only_what_is_missing(tmp_path):
    first = run_tasks(_tasks(), tmp_path, SETTINGS, progressbar=False)
    assert first.ran == tuple(f"t-{i}" for i in range(5)) and first.reused == ()
    assert _values(first.results) == _values(run_serial(_tasks()))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t-{i}.pkl" for i in range(5)]
    (tmp_path / "t-1.pkl").unlink()
    (tmp_path / "t-3.pkl").unlink()
    lines: list[str] = []
    again = run_tasks(_tasks(), tmp_path, SETTINGS, say=lines.append, progressbar=False)
    assert again.ran == ("t-1", "t-3")
    assert again.reused == ("t-0", "t-2", "t-4")
    assert set(again.task_seconds) == {"t-1", "t-3"}  # only what ran now was timed
    assert all(0 <= s < again.seconds for s in again.task_seconds.values())
    assert again.overhead_s(1) is not None and first.overhead_s(1) is not None
    assert _values(again.results) == _values(first.results)
    assert lines == [f"3 of 5 tasks were done already ({tmp_path}); 2 run"]


def test_a_store_of_other_settings_is_refused_not_mixed(tmp_path):
    run_tasks(_tasks(2), tmp_path, SETTINGS, progressbar=False)
    with pytest.raises(ArgumentError, match=r"t-0\.pkl: a result of another run"):
        run_tasks(_tasks(2), tmp_path, {**SETTINGS, "n": 6}, progressbar=False)
    assert fingerprint(SETTINGS) == fingerprint(dict(reversed(list(SETTINGS.items()))))


def test_an_unreadable_result_is_run_again(tmp_path):
    run_tasks(_tasks(2), tmp_path, SETTINGS, progressbar=False)
    (tmp_path / "t-0.pkl").write_bytes(b"\x80\x05 truncated")
    lines: list[str] = []
    again = run_tasks(_tasks(2), tmp_path, SETTINGS, say=lines.append, progressbar=False)
    assert again.ran == ("t-0",)
    assert "t-0.pkl: unreadable (UnpicklingError); its task runs again" in lines[0]
    record = pickle.loads((tmp_path / "t-0.pkl").read_bytes())
    assert record["key"] == "t-0" and record["fingerprint"] == fingerprint(SETTINGS)


def test_a_failing_task_stops_the_run_and_keeps_what_finished(tmp_path):
    tasks = [*_tasks(2), Task("bad", fail, ("no data",)), *_tasks(4)[2:]]
    with pytest.raises(RuntimeError, match="no data"):
        run_tasks(tasks, tmp_path, SETTINGS, progressbar=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t-0.pkl", "t-1.pkl"]


@pytest.mark.heavy
def test_dask_workers_give_the_serial_results(tmp_path):
    lines: list[str] = []
    run = run_tasks(
        _tasks(6), tmp_path, SETTINGS, EngineConfig(workers=2), lines.append, progressbar=False
    )
    assert _values(run.results) == _values(run_serial(_tasks(6)))
    assert {v["pid"] for v in run.results.values()} - {os.getpid()}  # ran in worker processes
    assert run.where == "a local Dask cluster of 2 worker processes"
    assert lines[0].startswith(f"running tasks on {run.where}; dashboard http://")
    assert len(list(tmp_path.glob("*.pkl"))) == 6
    with pytest.raises(HBMError, match="task bad failed: RuntimeError: no data"):
        run_tasks(
            [Task("bad", fail, ("no data",))],
            tmp_path / "b",
            SETTINGS,
            EngineConfig(workers=2),
            progressbar=False,
        )


def test_the_overhead_counts_only_workers_that_had_a_task():
    from hbm.app.engine import TaskRun

    one = TaskRun({"a": 1}, ("a",), (), seconds=10.0, where="x", task_seconds={"a": 9.0})
    assert one.overhead_s(2) == pytest.approx(1.0)  # not 2 x 10 - 9
    two = TaskRun({}, ("a", "b"), (), 10.0, "x", {"a": 9.0, "b": 9.0})
    assert two.overhead_s(2) == pytest.approx(1.0)
    assert TaskRun({}, (), ("a",), 0.1, "x", {}).overhead_s(2) is None


def test_a_dataclass_setting_is_fingerprinted_by_its_fields():
    from hbm.inference.config import SamplerConfig

    assert fingerprint({"s": SamplerConfig(tune=1)}) != fingerprint({"s": SamplerConfig(tune=2)})
    assert fingerprint({"s": SamplerConfig(tune=1)}) == fingerprint({"s": SamplerConfig(tune=1)})
