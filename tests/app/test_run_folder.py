"""Run folders you can trust, through the ``hbm`` command (issue 22, cases 1, 2, 6, 8, 9, 14).

A fit over an existing run that fails, is interrupted or cannot write leaves the old run byte
for byte (checked here by recomputing every file's sha256) and verified by its manifest, with
nothing beside it; every reader refuses a folder whose files disagree, naming the file.

Most tests refit through a stand-in for ``hbm.inference.fitting.fit`` that returns one real fit
of the workspace diary (computed once), so that a failure can be placed anywhere in the export;
the interrupt tests run real ``hbm fit`` processes and send them real signals.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import netCDF4
import pandas as pd
import pytest
import xarray as xr

from hbm.app.cli import main
from hbm.errors import FitError
from hbm.results import io

from ..conftest import FIT_ARGS, REPO

pytestmark = pytest.mark.fits
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def hashes(d: Path) -> dict[str, str]:
    """Every file under ``d`` and its sha256, computed here, not by hbm."""
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def fitted(workspace):
    """One real fit of the workspace diary (FIT_ARGS), for the stand-in ``fit``."""
    from hbm.app.parser import build_parser, fit_config
    from hbm.app.workflows import load_inputs
    from hbm.inference.fitting import fit

    _, priors, diary, _ = workspace
    argv = ["fit", str(diary), "--priors", str(priors), "--out", "unused", *FIT_ARGS]
    args = build_parser().parse_args(argv)
    config = fit_config(args)
    inputs = load_inputs(config)
    return fit(inputs.design, inputs.priors, config.sampler(), data_sha256=inputs.diary.sha256)


@pytest.fixture()
def refit(workspace, fitted, monkeypatch):
    """``refit(out, *flags)``: ``hbm fit`` of the workspace diary into ``out`` (stand-in fit)."""
    monkeypatch.setattr("hbm.inference.fitting.fit", lambda *a, **k: fitted)
    _, priors, diary, _ = workspace

    def run(out: Path) -> int:
        return main(["fit", str(diary), "--priors", str(priors), "--out", str(out), *FIT_ARGS])

    return run


@pytest.fixture()
def old(workspace, tmp_path):
    """A finished run (a copy of the workspace's) and its files' hashes."""
    run = tmp_path / "run"
    shutil.copytree(workspace[3], run)
    io.check_run_dir(run)
    return run, hashes(run)


def assert_intact(run: Path, before: dict[str, str]) -> None:
    """The old run, byte for byte and verified by its manifest, with nothing beside it."""
    assert hashes(run) == before
    io.check_run_dir(run)
    assert [p.name for p in run.parent.iterdir() if p.name.startswith(f".{run.name}.")] == []


# --- case 1: a failed or interrupted overwrite ------------------------------------------------


def test_case1_a_fit_that_fails_leaves_the_old_run(old, refit, monkeypatch, capsys):
    run, before = old

    def no_sampler(*args, **kwargs):
        raise FitError("invalid sampler settings: stand-in failure")

    monkeypatch.setattr("hbm.inference.fitting.fit", no_sampler)
    assert refit(run) == 2
    assert_intact(run, before)


def test_case1_a_full_disk_while_exporting_leaves_the_old_run(old, refit, monkeypatch, capsys):
    """The third export fails: before, fit.nc and two tables of the new run stayed behind."""
    run, before = old

    def full(self, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    assert refit(run) == 4
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: {run}/weights.parquet: cannot write: the disk is full (No space left on "
        f"device); {run} was left as it was"
    )
    assert_intact(run, before)


def _mixed(old_run: Path, other_run: Path) -> None:
    """What an interrupted overwrite used to leave: the new fit.nc and profiles, old the rest."""
    for name in (io.FIT_FILE, io.PROFILES_FILE):
        shutil.copy(other_run / name, old_run / name)


READERS = [
    ["profile", "{run}", "u000"],
    ["predict", "{run}", "{diary}", "--out", "{tmp}/pred.csv"],
    ["report", "{run}"],
    ["serve", "{run}"],
    ["diagnose", "{run}"],
    ["decide", "{run}"],
]


def test_case1_every_reader_refuses_a_mixed_folder(old, refit, workspace, tmp_path, capsys):
    run, _ = old
    other = tmp_path / "other"
    assert refit(other) == 0
    _mixed(run, other)
    for argv in READERS:
        capsys.readouterr()
        args = [a.format(run=run, diary=workspace[2], tmp=tmp_path) for a in argv]
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(f"error: {run}/fit.nc: does not match {run}/manifest.json"), args
    assert not (tmp_path / "pred.csv").exists()


# --- case 2: Ctrl-C stops a fit, in the pilot and in the sampling -----------------------------


def _fit_and_signal(workspace, out: Path, phase: str, sig: int, draws: int) -> tuple:
    """Run ``hbm fit`` and send ``sig`` as ``phase`` starts; (exit code, stderr, seconds)."""
    _, priors, diary, _ = workspace
    args = [*FIT_ARGS[:4], "--draws", str(draws), "--seed", "11"]
    cmd = [sys.executable, "-m", "hbm.app.cli", "fit", str(diary), "--priors", str(priors)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    lines, sent = [], None
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if line.strip() == f"phase: {phase}":
            sent = time.perf_counter()
            proc.send_signal(sig)
            break
    _, rest = proc.communicate(timeout=60)
    seconds = time.perf_counter() - sent if sent else float("nan")
    return proc.returncode, [*lines, *rest.splitlines()], seconds


@pytest.mark.parametrize(
    ("phase", "sig", "code"),
    [
        ("pilot", signal.SIGINT, 130),
        ("sample", signal.SIGINT, 130),
        ("sample", signal.SIGTERM, 143),
    ],
)
def test_case2_a_signal_stops_the_fit_in_its_phase(old, workspace, phase, sig, code):
    """Before, the pilot ignored Ctrl-C and the sampling exported its NaN-padded partial trace."""
    run, before = old
    # 20,000 draws: had the signal not stopped it, the fit would have gone on to its diagnostics
    returncode, lines, _ = _fit_and_signal(workspace, run, phase, sig, draws=20000)
    assert returncode == code, lines
    following = {"pilot": "phase: sample", "sample": "phase: diagnostics"}[phase]
    assert following not in lines  # it stopped in the phase it was in
    name = signal.Signals(sig).name
    assert lines[-1] == f"hbm fit: interrupted by {name}; {run} was left as it was", lines
    assert not any("Traceback" in line for line in lines)
    assert_intact(run, before)


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler of its own for ``sig`` (/proc's SigCgt mask)."""
    with open(f"/proc/{pid}/status") as status:
        caught = next(line for line in status if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (sig - 1) & 1)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_command_loads_is_one_line(workspace, tmp_path, sig, code):
    """Before, the first seconds (the command's imports) gave a KeyboardInterrupt traceback, or
    for SIGTERM no message at all."""
    _, priors, diary, _ = workspace
    cmd = [sys.executable, "-m", "hbm.app.main", "fit", str(diary), "--priors", str(priors)]
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "run"), *FIT_ARGS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=REPO,
    )
    deadline = time.monotonic() + 20
    while not _catches(proc.pid, signal.SIGTERM):  # hbm's handlers are in: it has begun loading
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.002)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "fitting" not in out  # it stopped while loading, before the fit began
    assert err.splitlines() == [f"hbm fit: interrupted by {signal.Signals(sig).name}"]
    assert not (tmp_path / "run").exists()


# --- case 6: an export that crashes ----------------------------------------------------------


def test_case6_an_export_that_crashes_leaves_the_old_run(old, refit, monkeypatch):
    """``--draws 1`` and sd 1e9 priors made diagnostics.json fail after 5 of 8 files."""
    run, before = old
    real = io.write_json

    def nan_diagnostics(target, obj):
        if Path(target).name == io.DIAGNOSTICS_FILE:
            raise ValueError("Out of range float values are not JSON compliant")
        return real(target, obj)

    monkeypatch.setattr(io, "write_json", nan_diagnostics)
    with pytest.raises(ValueError, match="Out of range float values"):
        refit(run)
    assert_intact(run, before)


# --- case 8: a fit.nc from another diary -----------------------------------------------------


def _other_diary_fit(run: Path) -> None:
    with netCDF4.Dataset(run / io.FIT_FILE, "a") as ds:
        ds.setncattr("data_sha256", "0" * 64)


def test_case8_a_fit_from_another_diary_is_refused_everywhere(old, workspace, tmp_path, capsys):
    run, _ = old
    _other_diary_fit(run)
    for argv in READERS:
        capsys.readouterr()
        args = [a.format(run=run, diary=workspace[2], tmp=tmp_path) for a in argv]
        assert main(args) == 2, args
        assert f"{run}/fit.nc: does not match" in capsys.readouterr().err, args
    (run / io.MANIFEST_FILE).unlink()  # a folder sealed as it is still does not pass
    with pytest.raises(Exception, match=r"fit\.nc: records data_sha256 '0000"):
        io.seal_run(run, "run", "by hand")


# --- case 9: stale files of an earlier run ---------------------------------------------------


def test_case9_an_overwrite_leaves_no_stale_report_figures_or_comparison(old, refit):
    run, _ = old
    io.write_report(run, "<html>the old run's report</html>", {"rank.png": b"old"})
    (run / io.COMPARISON_FILE).write_text("model\nhbm\n")  # put there by hand
    assert (run / "figures" / "rank.png").exists()
    assert refit(run) == 0
    assert sorted(os.listdir(run)) == sorted([*io.RUN_FILES, io.CONFIG_FILE, io.MANIFEST_FILE])
    io.check_run_dir(run)


def _compare_folder(parent: Path, run: Path) -> Path:
    """An ``hbm compare`` folder by hand: its table and ``hbm/`` (a copy of ``run``)."""
    info = io.read_json(run / io.RUN_FILE)
    target = parent / "cmp"
    with io.staged_run(target, "comparison", "hbm compare") as stage:
        row = {"d_within_auc": 0.03, "d_within_auc_lb": 0.02, "d_within_auc_ub": 0.04}
        row |= {"d_brier": -0.01, "d_brier_lb": -0.02, "d_brier_ub": 0.0, "boot_ci_prob": 0.9}
        table = pd.DataFrame([{"model": "hbm", **row}])
        io.write_csv(stage / io.COMPARISON_FILE, table)
        io.write_json(stage / "compare.json", {"run_id": "c1", "diary": info["diary"]})
        shutil.copytree(run, stage / "hbm")
    return target


def test_case9_decide_refuses_a_comparison_made_for_another_fit(old, refit, tmp_path, capsys):
    run, _ = old
    cmp = _compare_folder(tmp_path, run)
    assert main(["decide", str(cmp)]) == 1
    assert "held-out: no comparison" not in capsys.readouterr().out  # it used the table
    assert refit(cmp / "hbm") == 0  # hbm/ refitted after the comparison
    capsys.readouterr()
    assert main(["decide", str(cmp)]) == 2
    err = capsys.readouterr().err
    assert f"error: {cmp}/hbm: holds run '" in err and f"but {cmp} was made with run '" in err
    shutil.copy(cmp / io.COMPARISON_FILE, run / io.COMPARISON_FILE)  # into a run by hand
    assert main(["decide", str(run)]) == 2
    assert "comparison.csv: not part of this run" in capsys.readouterr().err


# --- case 14: SIGTERM while fit.nc is written; a full or read-only disk ----------------------


def test_case14_sigterm_while_fit_nc_is_written_leaves_no_temp_file(old, refit, monkeypatch):
    run, before = old
    real = xr.DataTree.to_netcdf
    seen = []

    def write_then_terminated(self, path, **kwargs):
        real(self, path, **kwargs)
        seen.extend(p.name for p in Path(path).parent.iterdir())
        os.kill(os.getpid(), signal.SIGTERM)  # raised here, by hbm's handler
        time.sleep(1)

    monkeypatch.setattr(xr.DataTree, "to_netcdf", write_then_terminated)
    assert refit(run) == 143
    assert any(n.startswith(".fit.nc.") and n.endswith(".tmp") for n in seen)
    assert_intact(run, before)
    assert [p for p in run.parent.rglob("*") if p.name.endswith(".tmp")] == []


_SMALL_DISK = textwrap.dedent(
    """
    set -e
    mount -t tmpfs -o size=256k tmpfs "$1"
    mount -t tmpfs -o ro,size=64k tmpfs "$2"
    shift 2
    set +e
    "$@" --out "$SMALL/run"; echo "exit $?"
    "$@" --out "$RO/run"; echo "exit $?"
    ls -A "$SMALL"
    """
)


def test_case14_a_full_or_read_only_disk_is_exit_4_naming_the_path(workspace, tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    small, ro = tmp_path / "small", tmp_path / "ro"
    small.mkdir()
    ro.mkdir()
    _, priors, diary, _ = workspace
    cmd = [sys.executable, "-m", "hbm.app.cli", "fit", str(diary), "--priors", str(priors)]
    done = subprocess.run(
        [
            "unshare",
            "-r",
            "-m",
            "sh",
            "-c",
            _SMALL_DISK,
            "sh",
            str(small),
            str(ro),
            *cmd,
            *FIT_ARGS,
            "--progress",  # the phases on stderr
        ],
        capture_output=True,
        text=True,
        env={**ENV, "SMALL": str(small), "RO": str(ro)},
        cwd=REPO,
        timeout=300,
    )
    if "mount" in done.stderr and "exit" not in done.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr[-200:]}")
    out, err = done.stdout.splitlines(), done.stderr.splitlines()
    # `ls -A` of the full disk printed nothing: no staged folder or temporary file left there
    assert [line for line in out if not line.startswith("fitting ")] == ["exit 4", "exit 4"]
    # whichever file of the run meets the full disk first (fit.nc, once the largest, is about
    # as small as the tables now): it is named, and nothing is left
    full = re.compile(
        rf"error: {re.escape(str(small))}/run/[\w.]+: cannot write: the disk is full \("
    )
    ro_error = f"error: --out {ro}/run: cannot write in {ro} (Read-only file system)"
    first = err.index("phase: write") + 1
    assert full.match(err[first]) and err[first].endswith(f"nothing was written to {small}/run")
    # the read-only disk stops the second fit before it reads anything (the argument checks)
    assert err[first + 1 :] == [ro_error]


def test_a_signal_after_the_run_is_written_says_so(old, refit, monkeypatch, capsys):
    """SIGTERM as the summary is printed: the new run is in place, and the message says so."""
    run, before = old
    import hbm.app.cli as cli

    def terminated_while_printing(fit_run):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    monkeypatch.setattr(cli, "print_fit", terminated_while_printing)
    assert refit(run) == 143
    err = capsys.readouterr().err.strip()
    assert err == f"hbm fit: interrupted by SIGTERM; {run} was written before the signal came"
    assert hashes(run) != before
    io.check_run_dir(run)
