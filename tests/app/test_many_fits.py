"""Many fits on Dask (issue 24): the quick study in this process and on two worker processes gives
byte-identical tables; an interrupted study resumes with only its missing tasks; an SBC on a
cluster of separate scheduler and worker processes survives a killed worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hbm.app.cli import main
from hbm.evaluation.baselines import MODELS

from ..conftest import FIT_ARGS, REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
QUICK_TASKS = 2 * 2 * len(MODELS)  # cells x models (the shipped priors cluster: all 8)
TABLES = ("study.csv", "study_summary.csv")


def _hbm(*args: str) -> list[str]:
    return [sys.executable, "-m", "hbm.app.cli", *args]


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout} s")


@pytest.fixture(scope="module")
def serial_study(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serial") / "study"
    assert main(["study", "--quick", "--workers", "1", "--out", str(out)]) == 0
    return out


@pytest.mark.ci_stat
@pytest.mark.fits
def test_quick_study_runs_every_model_in_every_cell(serial_study):
    results = pd.read_csv(serial_study / "study.csv")
    assert len(results) == QUICK_TASKS
    assert set(results["model"]) == set(MODELS) and len(MODELS) == 8
    assert results[["brier", "pooled_auc", "ece"]].notna().all().all()
    hbm = results[results["model"] == "hbm"]
    assert hbm[["d_within_auc_lb", "d_brier_ub", "weights_coverage"]].notna().all().all()
    timings = pd.read_csv(serial_study / "study_timings.csv")
    assert len(timings) == QUICK_TASKS and (timings["seconds"] > 0).all()
    assert len(list((serial_study / "tasks").glob("*.pkl"))) == QUICK_TASKS


@pytest.mark.ci_stat
@pytest.mark.fits
def test_two_workers_give_the_same_tables_as_one(serial_study, tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["study", "--quick", "--workers", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{QUICK_TASKS} tasks ran on a local Dask cluster of 2 worker processes" in printed
    for name in TABLES:
        assert (out / name).read_bytes() == (serial_study / name).read_bytes(), name
    print("\n[study-quick]\n" + printed[-4000:])


@pytest.mark.ci_stat
@pytest.mark.fits
def test_an_interrupted_study_reruns_only_its_missing_tasks(serial_study, tmp_path):
    out = tmp_path / "study"
    args = ["study", "--quick", "--workers", "2", "--out", str(out)]
    proc = subprocess.Popen(
        _hbm(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO
    )
    store = out / "tasks"
    _wait(lambda: len(list(store.glob("*.pkl"))) >= 6, 300, "six finished tasks", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    done = len(list(store.glob("*.pkl")))
    said = f"hbm study: interrupted by SIGINT; {done} of {QUICK_TASKS} tasks are stored in {store}"
    # multiprocessing's resource tracker may warn after it of a semaphore the stopped cluster
    # left (a warning of its own process, at exit)
    assert said + "; the same command runs the rest" in err.strip().splitlines()
    assert 6 <= done < QUICK_TASKS and not (out / "study.csv").exists()
    again = subprocess.run(_hbm(*args), capture_output=True, text=True, env=ENV, cwd=REPO)
    assert again.returncode == 0, again.stderr[-2000:]
    line = f"{QUICK_TASKS - done} tasks ran on a local Dask cluster of 2 worker processes, "
    assert line + f"{done} were done already" in again.stdout
    for name in TABLES:
        assert (out / name).read_bytes() == (serial_study / name).read_bytes(), name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SBC_ARGS = ["--simulations", "8", "--users", "3", "--days", "20", "--tune", "100"]
SBC_ARGS += ["--draws", "100", "--max-w", "2", "--bins", "4", "--seed", "3"]


@pytest.mark.heavy
@pytest.mark.fits
def test_sbc_on_a_cluster_survives_a_killed_worker(tmp_path):
    dask = [sys.executable, "-m"]
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs = [
        subprocess.Popen(
            [*dask[:2], "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
             address.rsplit(":", 1)[1], "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO,
        )
    ]  # fmt: skip
    try:
        time.sleep(2)
        workers = [
            subprocess.Popen(
                [*dask[:2], "distributed.cli.dask_worker", address, "--nthreads", "1",
                 "--no-nanny", "--name", f"w{i}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=REPO,
            )
            for i in range(2)
        ]  # fmt: skip
        procs += workers
        out = tmp_path / "cluster"
        run = subprocess.Popen(
            _hbm("sbc", *SBC_ARGS, "--scheduler", address, "--out", str(out)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
        )  # fmt: skip
        procs.append(run)
        store = out / "tasks"
        _wait(lambda: len(list(store.glob("*.pkl"))) >= 2, 300, "two finished simulations", run)
        workers[0].kill()  # mid-run: the other worker takes over its task
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-3000:]
        assert re.search(rf"8 tasks ran on the Dask cluster at {address}", stdout)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    serial = tmp_path / "serial"
    assert main(["sbc", *SBC_ARGS, "--workers", "1", "--out", str(serial)]) == 0
    for name in ("sbc_ranks.csv", "sbc_tests.csv"):
        assert (out / name).read_bytes() == (serial / name).read_bytes(), name
    ranks = pd.read_csv(serial / "sbc_ranks.csv")
    assert sorted(ranks["simulation"].unique()) == list(range(8))


@pytest.mark.heavy
@pytest.mark.fits
def test_compare_on_two_workers_writes_the_same_tables(workspace, tmp_path, capsys):
    _, priors, diary, _ = workspace
    args = ["compare", str(diary), "--priors", str(priors), *FIT_ARGS]
    args += ["--models", "global", "hbm", "embedding"]  # stability refits of hbm: a task too
    outs = {w: tmp_path / f"w{w}" for w in (1, 2)}
    for w, out in outs.items():
        assert main([*args, "--workers", str(w), "--out", str(out)]) == 0
        assert not (tmp_path / f".w{w}.tasks").exists()  # the store goes once out is written
    assert "4 tasks ran on a local Dask cluster of 2 worker processes" in capsys.readouterr().out
    for name in ("comparison.csv", "differences.csv", "per_user_metrics.csv", "stability.csv"):
        assert (outs[1] / name).read_bytes() == (outs[2] / name).read_bytes(), name


def test_bad_engine_arguments_are_one_line_errors(workspace, tmp_path, capsys):
    _, priors, diary, _ = workspace
    compare = ["compare", str(diary), "--priors", str(priors), "--out", str(tmp_path / "c")]
    assert main([*compare, "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --workers must be at least 1, got 0"
    for address in ("garbage", "http://127.0.0.1:8786", "tcp://[::1"):
        out = tmp_path / "s"
        assert main(["sbc", "--out", str(out), "--simulations", "2", "--scheduler", address]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: --scheduler {address}: no Dask")
        assert not (out / "tasks").exists()  # nothing is made before a result is stored


@pytest.mark.heavy
@pytest.mark.fits
def test_an_interrupted_sbc_in_one_process_resumes_and_extends(tmp_path):
    out = tmp_path / "sbc"
    args = ["sbc", *SBC_ARGS[2:], "--workers", "1", "--out", str(out)]
    proc = subprocess.Popen(
        _hbm(*args, "--simulations", "3"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=REPO,
    )  # fmt: skip
    store = out / "tasks"
    _wait(lambda: len(list(store.glob("*.pkl"))) >= 1, 300, "a finished simulation", proc)
    time.sleep(1.0)  # inside the next simulation's fit (simuk catches what it raises)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "Stopping simulation" not in err
    done = len(list(store.glob("*.pkl")))
    assert f"hbm sbc: interrupted by SIGINT; {done} of 3 tasks are stored in {store}" in err
    # more simulations extend the same SBC: a simulation does not depend on how many there are
    again = subprocess.run(
        _hbm(*args, "--simulations", "4"), capture_output=True, text=True, env=ENV, cwd=REPO
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{4 - done} tasks ran on this process, {done} " in again.stdout
    assert pd.read_csv(out / "sbc_ranks.csv")["simulation"].nunique() == 4
