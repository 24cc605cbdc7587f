"""hbm.results.run_folder and hbm.results.manifest: a run folder written whole or not at all.

No model is fitted: folders are built by hand (fit.nc a few literal draws). Each failure is
checked against the folder it must leave: the previous run byte for byte, verified by its
manifest, and no staged folder or temporary file beside it.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hbm.results.io as hio
from hbm.errors import Interrupted, RunError, StorageError
from hbm.results import manifest as mf
from hbm.results import run_folder as rf

DATA = "d" * 64


def _tree(data_sha256: str = DATA) -> xr.DataTree:
    post = xr.Dataset({"mu": (("chain", "draw"), np.arange(6.0).reshape(2, 3))})
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs["data_sha256"] = data_sha256
    return tree


def _exports(seed: int) -> dict[str, str]:
    return {
        "population.csv": f"feature,ci_prob,ci_kind\nx{seed},0.9,eti\n",
        "weights.csv": "user_id,feature,mean,ci_lb,ci_ub,class\nu1,x,0.1,0,1,neutral\n",
        "weights.parquet": "",
        "users.csv": "user_id,days_logged,confidence,reliable\nu1,60,0.5,False\n",
        "profiles.json": '[{"user_id": "u1"}]',
        "diagnostics.json": "{}",
    }


def _write(stage: Path, seed: int, data: str = DATA) -> None:
    """A run's files into ``stage``: the exports, fit.nc (run id in its attrs), run.json."""
    run_info = {"seed": seed, "run_id": f"run-{seed}", "diary": {"data_sha256": data}}
    tree = _tree(data)
    tree.attrs["run_id"] = run_info["run_id"]
    hio.save_fit(tree, stage / "fit.nc")
    for name, text in _exports(seed).items():
        hio.write_text(stage / name, text)
    hio.write_json(stage / "run.json", run_info)


def _run(parent: Path, seed: int = 1, name: str = "run") -> Path:
    target = parent / name
    with hio.staged_run(target, "run", "hbm fit") as stage:
        _write(stage, seed)
    return target


def _hashes(d: Path) -> dict[str, str]:
    """Every file under ``d`` and its sha256, computed here (not by the code under test)."""
    return {
        p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def _only(parent: Path, *names: str) -> None:
    assert sorted(os.listdir(parent)) == sorted(names)


# --- written whole --------------------------------------------------------------------------


def test_a_run_is_built_beside_its_target_and_swapped_in(tmp_path):
    old = _run(tmp_path, 1)
    before = _hashes(old)
    with hio.staged_run(old, "run", "hbm fit") as stage:
        assert stage.parent == tmp_path and stage.name.startswith(f".run.partial-{os.getpid()}-")
        _write(stage, 2)
        assert _hashes(old) == before  # the previous run stays intact and valid until the end
        hio.check_run_dir(old)
    _only(tmp_path, "run")
    manifest = hio.read_run(old).manifest
    assert manifest.run_id == "run-2" and manifest.data_sha256 == DATA
    listed = {n: e.sha256 for n, e in manifest.files.items()}
    assert listed == {n: h for n, h in _hashes(old).items() if n != "manifest.json"}
    doc = json.loads((old / "manifest.json").read_text())
    assert [doc[k] for k in ("schema", "kind", "run_id")] == [1, "run", "run-2"]


def test_case6_an_export_that_fails_half_way_leaves_the_old_run(tmp_path):
    """Issue case 6: a NaN in diagnostics.json ("Out of range float values are not JSON
    compliant") after 5 of 8 files used to leave them in the folder beside the old ones."""
    old = _run(tmp_path, 1)
    before = _hashes(old)
    with (
        pytest.raises(ValueError, match="Out of range float values"),
        hio.staged_run(old, "run", "hbm fit") as stage,
    ):
        _write(stage, 2)
        hio.write_json(stage / "diagnostics.json", {"max_rhat": float("nan")})
    assert _hashes(old) == before
    hio.check_run_dir(old)
    _only(tmp_path, "run")


def test_an_interrupt_while_writing_names_what_it_left(tmp_path):
    old = _run(tmp_path, 1)
    before = _hashes(old)
    with (
        pytest.raises(Interrupted) as info,
        hio.staged_run(old, "run", "hbm fit") as stage,
    ):
        _write(stage, 2)
        raise Interrupted(signal.SIGTERM)
    assert str(info.value) == f"interrupted by SIGTERM; {old} was left as it was"
    assert info.value.exit_code == 143 and _hashes(old) == before
    with (
        pytest.raises(Interrupted, match="nothing was written to"),
        hio.staged_run(tmp_path / "new", "run", "hbm fit"),
    ):
        raise Interrupted(signal.SIGINT)
    _only(tmp_path, "run")


def test_a_signal_during_the_swap_waits_until_it_is_done(tmp_path):
    """SIGTERM arriving as the folder is swapped in is delivered after, naming the new run."""
    old = _run(tmp_path, 1)

    def stop(signum, _frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    real_swap = rf._swap_in

    def swap_with_a_signal(stage, target):
        os.kill(os.getpid(), signal.SIGTERM)  # delivered at once were it not held
        real_swap(stage, target)

    try:
        rf._swap_in = swap_with_a_signal
        with pytest.raises(Interrupted) as info, hio.staged_run(old, "run", "hbm fit") as stage:
            _write(stage, 2)
    finally:
        rf._swap_in = real_swap
        signal.signal(signal.SIGTERM, previous)
    assert str(info.value) == f"interrupted by SIGTERM; {old} holds the new run (run-2)"
    assert hio.read_run(old).manifest.run_id == "run-2"
    _only(tmp_path, "run")


def test_without_an_atomic_exchange_the_old_folder_is_renamed_aside(tmp_path, monkeypatch):
    old = _run(tmp_path, 1)
    monkeypatch.setattr(rf, "_exchange", lambda a, b: False)
    with hio.staged_run(old, "run", "hbm fit") as stage:
        _write(stage, 2)
    assert hio.read_run(old).manifest.run_id == "run-2"
    _only(tmp_path, "run")


def test_a_failed_rename_in_puts_the_old_folder_back(tmp_path, monkeypatch):
    old = _run(tmp_path, 1)
    before = _hashes(old)
    monkeypatch.setattr(rf, "_exchange", lambda a, b: False)
    real = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".run.partial-"):
            raise OSError(errno.EIO, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(rf.os, "rename", rename)
    with (
        pytest.raises(StorageError, match=r"input/output error.*was left as it was"),
        hio.staged_run(old, "run", "hbm fit") as stage,
    ):
        _write(stage, 2)
    assert _hashes(old) == before
    _only(tmp_path, "run")


def test_only_an_empty_or_hbm_folder_is_replaced(tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.docx").write_text("mine")
    with pytest.raises(RunError, match=r"is not a run folder \(it holds thesis\.docx\)"):
        hio.check_out(mine)
    a_file = tmp_path / "f"
    a_file.write_text("")
    with pytest.raises(RunError, match="exists and is not a folder"):
        hio.check_out(a_file)
    (tmp_path / "empty").mkdir()
    hio.check_out(tmp_path / "empty")
    diary = _run(tmp_path, 1) / "diary.csv"
    diary.write_text("user_id\n")
    with pytest.raises(RunError, match=r"diary\.csv: an input of this command lies in"):
        hio.check_out(diary.parent, inputs=[diary])
    _only(tmp_path, "notes", "f", "empty", "run")


def test_staged_folders_of_killed_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    stale = tmp_path / f".run.partial-{int(dead.stdout)}"
    (stale / "sub").mkdir(parents=True)
    live = tmp_path / f".run.partial-{os.getppid()}"  # a running process: left alone
    live.mkdir()
    _run(tmp_path, 1)
    _only(tmp_path, "run", live.name)


def test_storage_errors_name_the_target_not_the_staged_folder(tmp_path, monkeypatch):
    old = _run(tmp_path, 1)
    before = _hashes(old)

    def full(self, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(StorageError) as info, hio.staged_run(old, "run", "hbm fit") as stage:
        hio.write_parquet(stage / "weights.parquet", pd.DataFrame({"a": [1]}))
    assert str(info.value) == (
        f"{old}/weights.parquet: cannot write: the disk is full (No space left on device); "
        f"{old} was left as it was"
    )
    assert _hashes(old) == before


def test_a_netcdf_error_on_a_full_disk_says_the_disk_is_full(tmp_path, monkeypatch):
    """Issue case 14: netCDF reports a full disk as "NetCDF: HDF error"."""

    def hdf_error(self, path, **kwargs):
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", hdf_error)
    monkeypatch.setattr(hio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(9, 9, 4096))
    with pytest.raises(StorageError) as info:
        hio.save_fit(_tree(), tmp_path / "fit.nc")
    assert str(info.value) == (
        f"{tmp_path}/fit.nc: cannot write: the disk is full (0.0 MB free; netCDF: NetCDF: HDF "
        "error)"
    )
    monkeypatch.setattr(hio.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(9, 0, 1e12))
    with pytest.raises(StorageError, match=r"fit\.nc: cannot write the fit \(NetCDF: HDF error\)$"):
        hio.save_fit(_tree(), tmp_path / "fit.nc")
    _only(tmp_path)


def _netcdf_message(tmp_path, monkeypatch, disk_usage) -> str:
    def hdf_error(self, path, **kwargs):
        raise RuntimeError("HDF error")

    monkeypatch.setattr(xr.DataTree, "to_netcdf", hdf_error)
    monkeypatch.setattr(hio.shutil, "disk_usage", disk_usage)
    with pytest.raises(StorageError) as info:
        hio.save_fit(_tree(), tmp_path / "fit.nc")
    return str(info.value)


@pytest.mark.parametrize(
    ("free", "said"),
    [
        (0, ": the disk is full (0.0 MB free; netCDF: HDF error)"),
        (49_950_001, ": the disk is full (50.0 MB free; netCDF: HDF error)"),  # 49.950001 MB
        ((64 << 20) - 1, ": the disk is full (67.1 MB free; netCDF: HDF error)"),
        (64 << 20, " the fit (HDF error)"),  # 64 MiB free and more: not reported as full
    ],
)
def test_a_netcdf_error_is_a_full_disk_below_64_mib_free(tmp_path, monkeypatch, free, said):
    asked = []

    def usage(path):
        asked.append(Path(path))
        return shutil._ntuple_diskusage(1 << 40, 0, free)

    message = _netcdf_message(tmp_path, monkeypatch, usage)
    assert message == f"{tmp_path}/fit.nc: cannot write{said}"
    assert asked == [tmp_path]  # the free space of the fit's folder


def test_a_netcdf_error_when_the_free_space_is_unknown(tmp_path, monkeypatch):
    def usage(path):
        raise OSError(errno.EIO, "Input/output error")

    message = _netcdf_message(tmp_path, monkeypatch, usage)
    assert message == f"{tmp_path}/fit.nc: cannot write the fit (HDF error)"


_ON_SMALL_DISKS = textwrap.dedent(
    """
    import json, os, subprocess, sys
    import numpy as np, xarray as xr
    import hbm.results.io as hio
    from hbm.errors import StorageError
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", sys.argv[1]], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", sys.argv[2]], check=True)
    out = {}
    big = xr.DataTree.from_dict({"posterior": xr.Dataset(
        {"x": ("a", np.random.default_rng(0).normal(size=200_000))})})
    for key, write in [
        ("fit", lambda: hio.save_fit(big, sys.argv[1] + "/fit.nc")),
        ("csv", lambda: hio.write_bytes(sys.argv[1] + "/big.bin", b"x" * 400_000)),
        ("ro", lambda: hio.check_out(sys.argv[2] + "/run")),
    ]:
        try:
            write()
            out[key] = "written"
        except StorageError as exc:
            out[key] = str(exc)
    out["left"] = sorted(os.listdir(sys.argv[1]))
    print(json.dumps(out))
    """
)


def test_a_real_full_disk_and_a_read_only_one_are_storage_errors(tmp_path):
    """ENOSPC and EROFS from real file systems (tmpfs in a private mount namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    small, ro = tmp_path / "small", tmp_path / "ro"
    small.mkdir()
    ro.mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        ["unshare", "-r", "-m", sys.executable, "-c", _ON_SMALL_DISKS, str(small), str(ro)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr[-200:]}")
    out = json.loads(done.stdout)
    assert out["fit"].startswith(f"{small}/fit.nc: cannot write: the disk is full (")
    assert out["csv"] == (
        f"{small}/big.bin: cannot write: the disk is full (No space left on device)"
    )
    assert out["ro"] == f"{ro}/run: cannot write: read-only file system (Read-only file system)"
    assert out["left"] == []  # no temporary file left on the full disk


# --- verified on reading --------------------------------------------------------------------


def test_every_file_is_checked_against_the_manifest_naming_it(tmp_path):
    d = _run(tmp_path, 1)
    (d / "users.csv").write_text("user_id,days_logged,confidence,reliable\nu1,61,0.5,False\n")
    with pytest.raises(RunError) as info:
        hio.read_run(d)
    assert str(info.value) == (
        f"{d}/users.csv: does not match {d}/manifest.json (another sha256): changed since hbm "
        "fit wrote it, or from another run"
    )
    (d / "users.csv").unlink()
    with pytest.raises(RunError, match=r"lacks \['users\.csv'\]"):
        hio.check_run_dir(d)
    d2 = _run(tmp_path, 1, "run2")
    (d2 / "manifest.json").write_text("{}")
    with pytest.raises(RunError, match=r"manifest\.json: manifest schema None; this hbm reads 1"):
        hio.check_run_dir(d2)


def test_case8_a_fit_from_another_diary_is_refused(tmp_path):
    """Issue case 8: fit.nc and run.json both record the data hash, and now they are compared."""
    d = _run(tmp_path, 1)
    hio.save_fit(_tree("e" * 64), d / "fit.nc")  # another diary's fit copied in
    with pytest.raises(RunError, match=rf"^{d}/fit\.nc: does not match {d}/manifest\.json"):
        hio.check_run_dir(d)
    with pytest.raises(RunError) as info:
        mf.seal(d, "run", "by hand")  # even sealed as it is
    assert str(info.value) == (
        f"{d}/fit.nc: records data_sha256 '{'e' * 64}', but {d}/run.json records "
        f"'{DATA}': the fit is from another run; refit into {d}"
    )


def test_a_fit_of_another_run_of_the_same_diary_is_refused(tmp_path):
    d = _run(tmp_path, 1)
    other = _run(tmp_path, 2, "other")
    shutil.copy(other / "fit.nc", d / "fit.nc")
    (d / "manifest.json").unlink()
    with pytest.raises(RunError, match=r"fit\.nc: records run_id 'run-2', but .*'run-1'"):
        mf.seal(d, "run", "by hand")


def test_a_folder_without_a_manifest_is_refused_with_the_refit_command(tmp_path):
    d = _run(tmp_path, 1)
    (d / "manifest.json").unlink()
    (d / "config.toml").write_text("")
    with pytest.raises(RunError) as info:
        hio.read_run(d)
    assert str(info.value) == (
        f"{d}: no manifest.json, so its files cannot be verified (written by an hbm before run "
        f"folders had manifests, or by hand); refit it: `hbm fit --config {d}/config.toml "
        f"--out {d}`"
    )


def _comparison(parent: Path, run: Path) -> Path:
    """A compare folder by hand: its table, compare.json and a copy of ``run`` as ``hbm/``."""
    target = parent / "cmp"
    with hio.staged_run(target, "comparison", "hbm compare") as stage:
        table = "model,d_within_auc_lb,d_brier_lb\nglobal,,\nhbm,0.01,-0.01\n"
        hio.write_text(stage / "comparison.csv", table)
        hio.write_json(stage / "compare.json", {"run_id": "c1", "diary": {"data_sha256": DATA}})
        shutil.copytree(run, stage / "hbm")
    return target


def test_case9_a_comparison_of_another_fit_is_refused(tmp_path):
    """Issue case 9: ``hbm decide`` must not take a comparison made for another fit."""
    cmp = _comparison(tmp_path, _run(tmp_path, 1))
    manifest = mf.verify(cmp, "comparison")
    assert manifest.runs == {"hbm": "run-1"} and "hbm/fit.nc" not in manifest.files
    run = hio.read_run(cmp / "hbm")
    assert hio.verify_comparison(cmp, run) == cmp / "comparison.csv"
    with hio.staged_run(cmp / "hbm", "run", "hbm fit") as stage:  # hbm/ refitted
        _write(stage, 2)
    with pytest.raises(RunError) as info:
        hio.verify_comparison(cmp, hio.read_run(cmp / "hbm"))
    assert str(info.value) == (
        f"{cmp}/hbm: holds run 'run-2', but {cmp} was made with run 'run-1' (refitted since?); "
        f"rerun the command that wrote {cmp}"
    )
    with pytest.raises(RunError, match=r"a comparison folder, not a run folder; its run is"):
        hio.check_run_dir(cmp)


def test_a_comparison_refuses_a_run_it_does_not_record(tmp_path):
    run = _run(tmp_path, 1)
    cmp = _comparison(tmp_path, run)
    shutil.copytree(run, cmp / "x" / "hbm")  # a copy deeper in: not the comparison's run
    for folder, sub in ((run, "run"), (cmp / "x" / "hbm", "x/hbm")):
        with pytest.raises(RunError) as info:
            hio.verify_comparison(cmp, hio.read_run(folder))
        assert str(info.value) == (
            f"{cmp}/manifest.json: records no run {sub}/; run `hbm compare` again"
        )
    unsealed = dataclasses.replace(hio.read_run(cmp / "hbm"), manifest=None)
    with pytest.raises(RunError, match=r"manifest\.json: records no run hbm/; run `hbm compare`"):
        hio.verify_comparison(cmp, unsealed)


def test_a_comparison_of_other_data_names_both_hashes(tmp_path):
    cmp = _comparison(tmp_path, _run(tmp_path, 1))
    run = hio.read_run(cmp / "hbm")
    manifest = dataclasses.replace(run.manifest, data_sha256="e" * 64)
    other = dataclasses.replace(run, manifest=manifest)
    with pytest.raises(RunError) as info:
        hio.verify_comparison(cmp, other)
    assert str(info.value) == (
        f"{cmp}/hbm: fitted to data eeeeeeeeeeee, but {cmp} compared data dddddddddddd; "
        "run `hbm compare` again"
    )


def test_a_comparison_without_its_table_falls_back_to_the_run_s(tmp_path):
    """A compare folder whose manifest lists no comparison.csv: the table of its run, if the
    run's manifest lists one, else none."""
    run = _run(tmp_path, 1)
    target = tmp_path / "cmp"
    for with_table in (False, True):
        if with_table:
            with hio.update_run(run, "hbm compare") as stage:
                hio.write_text(stage / "comparison.csv", "model\nhbm\n")
        with hio.staged_run(target, "comparison", "hbm compare") as stage:
            hio.write_json(stage / "compare.json", {"run_id": "c1", "diary": {"data_sha256": DATA}})
            shutil.copytree(run, stage / "hbm")
        got = hio.verify_comparison(target, hio.read_run(target / "hbm"))
        assert got == (target / "hbm" / "comparison.csv" if with_table else None)


def test_files_the_manifest_does_not_list_are_not_part_of_the_run(tmp_path):
    d = _run(tmp_path, 1)
    (d / "comparison.csv").write_text("model\nhbm\n")
    run = hio.read_run(d)  # accepted, but the stray file is not the run's
    assert run.optional("comparison.csv") is None and run.optional("run.json") == d / "run.json"


# --- added to a finished run ----------------------------------------------------------------


def test_update_links_the_run_replaces_its_own_files_and_keeps_the_rest(tmp_path):
    d = _run(tmp_path, 1)
    (d / "notes.txt").write_text("kept, unlisted")
    fit_inode = (d / "fit.nc").stat().st_ino
    with hio.update_run(d, "hbm diagnose") as stage:
        hio.write_bytes(stage / "figures" / "rank.png", b"R1")
        hio.write_bytes(stage / "figures" / "old.png", b"O")
    with hio.update_run(d, "hbm diagnose") as stage:
        assert not (stage / "figures" / "old.png").exists()  # its own earlier files left out
        hio.write_bytes(stage / "figures" / "rank.png", b"R2")
    files = hio.read_run(d).manifest.files
    assert (d / "figures" / "rank.png").read_bytes() == b"R2"
    assert files["figures/rank.png"].written_by == "hbm diagnose"
    assert files["fit.nc"].written_by == "hbm fit" and "figures/old.png" not in files
    assert (d / "fit.nc").stat().st_ino == fit_inode  # linked, not copied
    assert (d / "notes.txt").read_text() == "kept, unlisted" and "notes.txt" not in files
    _only(tmp_path, "run")


def test_update_refuses_a_run_replaced_meanwhile(tmp_path):
    d = _run(tmp_path, 1)
    with (
        pytest.raises(RunError, match=r"changed while hbm report ran; run it again"),
        hio.update_run(d, "hbm report") as stage,
    ):
        hio.write_text(stage / "report.html", "<html></html>")
        with hio.staged_run(d, "run", "hbm fit") as other:  # a fit finished meanwhile
            _write(other, 2)
    assert hio.read_run(d).manifest.run_id == "run-2" and not (d / "report.html").exists()
    _only(tmp_path, "run")


def test_update_of_an_unverified_run_is_refused(tmp_path):
    d = _run(tmp_path, 1)
    with netCDF4.Dataset(d / "fit.nc", "a") as ds:
        ds.setncattr("run_id", "edited")
    with (
        pytest.raises(RunError, match=r"fit\.nc: does not match"),
        hio.update_run(d, "hbm report"),
    ):
        pass
    _only(tmp_path, "run")
