"""hbm.results.io rules: atomic writers, file modes, fit save/load and run-folder checks.

Expected contents are literal bytes/text written in the tests; run folders and fits are built
by hand (no model is fitted here).
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path
from types import SimpleNamespace

import netCDF4
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xarray as xr

import hbm.results.io as hio
from hbm.errors import ConfigError, Interrupted, RunError, StorageError
from hbm.interrupts import interruptible


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _raises(exc_type, fn, *args) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args)
    return str(info.value)


# --- atomic writers -------------------------------------------------------------------------


def test_failed_csv_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    """A writer that dies part-way must leave the previous file as it was and no temp file.

    This is the test that catches an atomic writer made to write straight to the target.
    """
    target = tmp_path / "users.csv"
    target.write_text("user_id\nold\n")

    def half_then_fail(self, path, **kwargs):
        Path(path).write_text("user_id\nhalf")
        raise RuntimeError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        hio.write_csv(target, pd.DataFrame({"user_id": ["new"]}))
    assert target.read_text() == "user_id\nold\n"
    assert os.listdir(tmp_path) == ["users.csv"]


def test_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    def fail(path: Path) -> None:
        path.write_bytes(b"partial")
        raise OSError("no space left")

    target = tmp_path / "sub" / "x.bin"
    with pytest.raises(StorageError, match=f"^{target}: cannot write: no space left$"):
        hio._write(target, fail)
    assert os.listdir(tmp_path / "sub") == []


def test_temp_file_lies_beside_target_and_target_is_untouched_while_writing(tmp_path):
    target = tmp_path / "fit.nc"
    target.write_text("old")
    seen = {}

    def writer(tmp: Path) -> None:
        seen["tmp"] = tmp
        seen["listing"] = sorted(os.listdir(tmp_path))
        seen["target"] = target.read_text()
        tmp.write_text("new")

    assert hio._write(target, writer) == target
    tmp = seen["tmp"]
    assert tmp.parent == tmp_path
    assert tmp.name.startswith(".fit.nc.") and tmp.name.endswith(".tmp")
    assert seen["listing"] == sorted([tmp.name, "fit.nc"])
    assert seen["target"] == "old"
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["fit.nc"]


def test_write_json_with_nan_refuses_and_keeps_old_file(tmp_path):
    target = tmp_path / "run.json"
    target.write_text('{"seed": 1}\n')
    for bad in ({"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}):
        with pytest.raises((ValueError, TypeError)):
            hio.write_json(target, bad)
        assert target.read_text() == '{"seed": 1}\n'
        assert os.listdir(tmp_path) == ["run.json"]


def test_written_file_mode_follows_the_umask(tmp_path):
    p = hio.write_text(tmp_path / "a.txt", "x")
    assert _mode(p) == 0o666 & ~_umask()


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_file_mode_for_given_umasks(tmp_path, monkeypatch, mask, mode):
    monkeypatch.setattr(hio, "_UMASK", mask)
    assert _mode(hio.write_bytes(tmp_path / "a.bin", b"x")) == mode


def test_current_umask_reads_without_changing_it():
    old = os.umask(0o027)
    try:
        assert hio._current_umask() == 0o027
        assert _umask() == 0o027
    finally:
        os.umask(old)


def test_writers_create_folders_overwrite_and_return_the_path(tmp_path):
    target = tmp_path / "a" / "b" / "note.txt"
    out = hio.write_text(str(target), "Zoë\n")
    assert out == target and isinstance(out, Path)
    assert target.read_bytes() == b"Zo\xc3\xab\n"
    hio.write_text(target, "second")
    assert target.read_text() == "second"
    assert hio.write_bytes(target, b"\x00\x01") == target
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(target.parent) == ["note.txt"]


def test_write_json_exact_text(tmp_path):
    p = hio.write_json(tmp_path / "x.json", {"b": [1, "é"], "a": None})
    assert p.read_bytes() == '{\n  "b": [\n    1,\n    "é"\n  ],\n  "a": null\n}\n'.encode()


def test_write_csv_exact_bytes_without_index(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[7, 8])
    p = hio.write_csv(tmp_path / "t.csv", frame)
    assert p.read_bytes() == b"a,b\n1,x\n2,y\n"


def test_write_parquet_without_index(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=[5, 6])
    p = hio.write_parquet(tmp_path / "t.parquet", frame)
    assert p == tmp_path / "t.parquet"
    assert p.read_bytes()[:4] == b"PAR1"
    assert pq.read_schema(p).names == ["a", "b"]
    back = pd.read_parquet(p)
    assert back["a"].tolist() == [1, 2]
    assert back.index.tolist() == [0, 1]


def test_write_toml_exact_text_with_and_without_comment(tmp_path):
    p = hio.write_toml(tmp_path / "c.toml", {"seed": 3, "fit": {"chains": 2}})
    assert p == tmp_path / "c.toml"
    assert p.read_text() == "seed = 3\n\n[fit]\nchains = 2\n"  # no comment: no "#" line
    hio.write_toml(p, {"seed": 3}, "hbm fit config\n\n  indented  ")
    # each comment line after "# ", trailing spaces (and so a blank line's) stripped
    assert p.read_text() == "# hbm fit config\n#\n#   indented\nseed = 3\n"


def test_read_toml_errors_name_the_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('seed = 3\nname = "é"\n', encoding="utf-8")
    assert hio.read_toml(str(p)) == {"seed": 3, "name": "é"}
    gone = tmp_path / "none.toml"
    assert _raises(ConfigError, hio.read_toml, gone) == f"{gone}: config file not found"
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    assert _raises(ConfigError, hio.read_toml, folder) == (
        f"{folder}: cannot read config file ([Errno 21] Is a directory: '{folder}')"
    )
    p.write_bytes(b'name = "\xff"\n')  # byte 8 (0-based) is not UTF-8
    assert _raises(ConfigError, hio.read_toml, p) == (
        f"{p}: not UTF-8 text (invalid start byte at byte 8)"
    )


# --- fits -----------------------------------------------------------------------------------


def _tree() -> xr.DataTree:
    post = xr.Dataset(
        {
            "mu": (("chain", "draw"), np.arange(6.0).reshape(2, 3)),
            "tau": (("chain", "draw"), np.full((2, 3), 0.5)),
        }
    )
    obs = xr.Dataset({"y": ("obs", np.array([0, 1, 1]))})
    tree = xr.DataTree.from_dict({"posterior": post, "observed_data": obs})
    tree.attrs["priors_sha256"] = "abc"
    return tree


def test_save_fit_round_trip_compressed(tmp_path):
    p = hio.save_fit(_tree(), tmp_path / "fit.nc")
    assert p == tmp_path / "fit.nc"
    assert os.listdir(tmp_path) == ["fit.nc"]
    with netCDF4.Dataset(p) as nc:
        filters = nc["posterior"]["mu"].filters()
        assert (filters["zlib"], filters["shuffle"], filters["complevel"]) == (True, True, 4)
        filters = nc["observed_data"]["y"].filters()
        assert (filters["zlib"], filters["complevel"]) == (True, 4)
    tree = hio.load_fit(p)
    p.unlink()  # loaded into memory: the file is no longer needed
    assert tree["posterior"]["mu"].values.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert tree["observed_data"]["y"].values.tolist() == [0, 1, 1]
    assert tree.attrs["priors_sha256"] == "abc"


def test_a_signal_during_the_fit_write_waits_for_the_write_then_stops(tmp_path, monkeypatch):
    """A signal raised inside xarray's netCDF lock hung its cleanup on that lock for good."""
    real, steps = xr.DataTree.to_netcdf, []

    def to_netcdf(self, path, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # lands inside the write
        steps.append("signal sent")
        return real(self, path, **kwargs)

    monkeypatch.setattr(xr.DataTree, "to_netcdf", to_netcdf)
    with pytest.raises(Interrupted), interruptible():
        hio.save_fit(_tree(), tmp_path / "fit.nc")
    assert steps == ["signal sent"]  # the write went on past the signal
    assert list(tmp_path.iterdir()) == []  # and its temp file was removed when it stopped


def test_a_signal_during_the_fit_read_stops_after_the_file_is_closed(tmp_path, monkeypatch):
    p = hio.save_fit(_tree(), tmp_path / "fit.nc")
    real, steps = xr.DataTree.load, []

    def load(self, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        steps.append("signal sent")
        return real(self, **kwargs)

    monkeypatch.setattr(xr.DataTree, "load", load)
    with pytest.raises(Interrupted), interruptible():
        hio.load_fit(p)
    assert steps == ["signal sent"]


def test_load_fit_some_posterior_vars(tmp_path):
    p = hio.save_fit(_tree(), tmp_path / "fit.nc")
    small = hio.load_fit(str(p), ("tau",))
    p.unlink()
    assert list(small.children) == ["posterior"]
    assert list(small["posterior"].data_vars) == ["tau"]
    assert small["posterior"]["tau"].values.tolist() == [[0.5] * 3] * 2
    assert small.attrs == {"priors_sha256": "abc"}


def test_load_fit_errors_name_the_file(tmp_path):
    p = hio.save_fit(_tree(), tmp_path / "fit.nc")
    assert _raises(RunError, hio.load_fit, p, ("mu", "beta", "sigma")) == (
        f"{p}: the posterior holds no ['beta', 'sigma']"
    )
    # bug: a netCDF file without a posterior group used to raise a bare KeyError
    other = hio.save_fit(xr.DataTree.from_dict({"prior": _tree()["posterior"]}), tmp_path / "o.nc")
    assert _raises(RunError, hio.load_fit, other, ("mu",)) == (
        f"{other}: the fit holds no posterior group"
    )
    gone = tmp_path / "none.nc"
    assert _raises(RunError, hio.load_fit, gone) == f"{gone}: fit file not found"
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"not netcdf at all")
    assert _raises(RunError, hio.load_fit, bad).startswith(f"{bad}: cannot read fit (")


# --- JSON and run folders -------------------------------------------------------------------


def test_read_json(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes('{"name": "Zoë"}'.encode())
    assert hio.read_json(str(p)) == {"name": "Zoë"}
    gone = tmp_path / "none.json"
    assert _raises(RunError, hio.read_json, gone) == f"{gone}: file not found"
    p.write_text('{\n  "a": 1,\n  oops\n}\n')
    assert _raises(RunError, hio.read_json, p) == (
        f"{p}: not valid JSON at line 3: Expecting property name enclosed in double quotes"
    )


EXPORTS = [  # what a run folder holds, in sorted order
    "diagnostics.json",
    "fit.nc",
    "population.csv",
    "profiles.json",
    "run.json",
    "users.csv",
    "weights.csv",
    "weights.parquet",
]

RUN_TEXT = {
    "population.csv": "feature,ci_prob,ci_kind\nscreen_hours,0.9,hdi\n",
    "weights.csv": "user_id,feature,mean,ci_lb,ci_ub,class\n007,x,0.1,-0.2,0.4,neutral\n",
    "weights.parquet": "",
    "fit.nc": "",
    "users.csv": "user_id,days_logged,confidence,reliable\n007,60,high,True\n010,30,low,False\n",
    "profiles.json": '[{"user_id": "007"}, {"user_id": "010"}]',
    "diagnostics.json": '{"ok": true}',
    "run.json": '{"seed": 3}',
}


def _run(tmp_path, **override: str) -> Path:
    """A hand-built run folder (fit.nc a small real fit), sealed by its manifest."""
    d = tmp_path / "run"
    d.mkdir()
    for name, text in RUN_TEXT.items():
        (d / name).write_text(override.get(name.replace(".", "_"), text))
    hio.save_fit(_tree(), d / "fit.nc")
    hio.seal_run(d, "run", "test")
    return d


def test_read_run_reads_a_hand_built_folder(tmp_path):
    d = _run(tmp_path)
    run = hio.read_run(str(d))
    assert run.path == d
    assert run.users["user_id"].tolist() == ["007", "010"]
    assert run.users["days_logged"].tolist() == [60, 30]
    assert run.weights["user_id"].tolist() == ["007"]
    assert run.population["ci_kind"].tolist() == ["hdi"]
    assert run.profiles == [{"user_id": "007"}, {"user_id": "010"}]
    assert run.diagnostics == {"ok": True}
    assert run.run_info == {"seed": 3}


def test_check_run_dir(tmp_path):
    gone = tmp_path / "nothing"
    assert _raises(RunError, hio.check_run_dir, gone) == f"{gone}: run folder not found"
    a_file = tmp_path / "f"
    a_file.write_text("")
    assert _raises(RunError, hio.check_run_dir, a_file) == f"{a_file}: run folder not found"
    d = tmp_path / "run"
    d.mkdir()
    (d / "fit.nc").write_text("")
    (d / "run.json").write_text("{}")
    assert _raises(RunError, hio.check_run_dir, d) == (
        f"{d}: run folder lacks ['population.csv', 'weights.csv', 'weights.parquet', "
        "'users.csv', 'profiles.json', 'diagnostics.json']; was `hbm fit` run with "
        f"--out {d}?"
    )
    for name in RUN_TEXT:
        (d / name).write_text("")
    assert _raises(RunError, hio.check_run_dir, d) == (
        f"{d}: no manifest.json, so its files cannot be verified (written by an hbm before run "
        f"folders had manifests, or by hand); refit it: `hbm fit DIARY --out {d}`"
    )
    hio.save_fit(_tree(), d / "fit.nc")
    (d / "run.json").write_text("{}")
    hio.seal_run(d, "run", "test")
    out = hio.check_run_dir(str(d))
    assert out == d and isinstance(out, Path)


@pytest.mark.parametrize(
    ("name", "text", "lacks"),
    [
        ("population.csv", "feature,ci_prob\nx,0.9\n", "['ci_kind']"),
        ("weights.csv", "user_id,feature,ci_lb,ci_ub\n007,x,0,1\n", "['mean', 'class']"),
        ("users.csv", "user_id,days_logged,confidence\n007,1,high\n", "['reliable']"),
    ],
)
def test_read_run_names_missing_columns(tmp_path, name, text, lacks):
    d = _run(tmp_path, **{name.replace(".", "_"): text})
    assert _raises(RunError, hio.read_run, d) == (
        f"{d / name}: lacks columns {lacks}; expected an export of `hbm fit`"
    )


def test_read_run_unreadable_table(tmp_path):
    d = _run(tmp_path, users_csv="")
    assert _raises(RunError, hio.read_run, d).startswith(f"{d / 'users.csv'}: cannot read (")


@pytest.mark.parametrize(
    "profiles",
    ["{}", '{"user_id": "007"}', '["007", "010"]', '[{"user_id": "007"}, {"name": "010"}]'],
)
def test_read_run_refuses_profiles_that_are_not_a_list_of_users(tmp_path, profiles):
    d = _run(tmp_path, profiles_json=profiles)
    assert _raises(RunError, hio.read_run, d) == (
        f"{d / 'profiles.json'}: expected a list of profiles with 'user_id'"
    )


@pytest.mark.parametrize(
    ("profiles", "example"),
    [
        ('[{"user_id": "007"}, {"user_id": "011"}]', "['010', '011']"),
        ('[{"user_id": "010"}, {"user_id": "007"}]', "[]"),  # same users, other order
        ('[{"user_id": "007"}]', "['010']"),
        (json.dumps([{"user_id": f"u{i}"} for i in range(6)]), "['007', '010', 'u0', 'u1', 'u2']"),
        ('[{"user_id": 7}, {"user_id": 10}]', "['007', '010', '10', '7']"),
    ],
)
def test_read_run_refuses_profiles_and_users_of_two_runs(tmp_path, profiles, example):
    d = _run(tmp_path, profiles_json=profiles)
    assert _raises(RunError, hio.read_run, d) == (
        f"{d}: profiles.json and users.csv list different users (e.g. {example}); "
        "the folder mixes two runs"
    )


@pytest.mark.parametrize(
    ("override", "name"),
    [({"diagnostics_json": "[]"}, "diagnostics.json"), ({"run_json": '"x"'}, "run.json")],
)
def test_read_run_wants_json_objects(tmp_path, override, name):
    d = _run(tmp_path, **override)
    assert _raises(RunError, hio.read_run, d) == f"{d / name}: expected a JSON object"


def test_read_run_passes_on_bad_json(tmp_path):
    d = _run(tmp_path, diagnostics_json="{")
    assert _raises(RunError, hio.read_run, d).startswith(
        f"{d / 'diagnostics.json'}: not valid JSON at line 1:"
    )


def test_write_run_then_read_run(tmp_path):
    users = pd.DataFrame(
        {"user_id": ["007", "b"], "days_logged": [60, 5], "confidence": ["high", "low"]}
    ).assign(reliable=[True, False])
    weights = pd.DataFrame(
        {
            "user_id": ["007"],
            "feature": ["x"],
            "mean": [0.25],
            "ci_lb": [0.0],
            "ci_ub": [0.5],
            "class": ["trigger"],
        }
    )
    exports = SimpleNamespace(
        population=pd.DataFrame({"feature": ["x"], "ci_prob": [0.9], "ci_kind": ["hdi"]}),
        weights=weights,
        users=users,
        profiles=[{"user_id": "007"}, {"user_id": "b"}],
        diagnostics={"max_rhat": 1.01},
        calls={"n_calls": 1},
    )
    d = tmp_path / "a" / "run"
    with hio.staged_run(d, "run", "test") as stage:
        assert hio.write_run(str(stage), _tree(), exports, {"seed": 3, "run_id": "r1"}) == stage
        assert not d.exists()  # built beside the target, swapped in at the end
    assert sorted(os.listdir(d)) == sorted([*EXPORTS, "manifest.json"])
    assert sorted(os.listdir(d.parent)) == ["run"]
    assert (d / "users.csv").read_text() == (
        "user_id,days_logged,confidence,reliable\n007,60,high,True\nb,5,low,False\n"
    )
    assert (d / "weights.csv").read_text() == (
        "user_id,feature,mean,ci_lb,ci_ub,class\n007,x,0.25,0.0,0.5,trigger\n"
    )
    assert (d / "population.csv").read_text() == "feature,ci_prob,ci_kind\nx,0.9,hdi\n"
    assert pd.read_parquet(d / "weights.parquet")["class"].tolist() == ["trigger"]
    assert (d / "profiles.json").read_text() == (
        '[\n  {\n    "user_id": "007"\n  },\n  {\n    "user_id": "b"\n  }\n]\n'
    )
    assert (d / "diagnostics.json").read_text() == '{\n  "max_rhat": 1.01\n}\n'
    assert (d / "run.json").read_text() == (
        '{\n  "seed": 3,\n  "run_id": "r1",\n  "trigger_calls": {\n    "n_calls": 1\n  }\n}\n'
    )
    run = hio.read_run(d)
    assert run.manifest is not None and run.manifest.run_id == "r1"
    assert run.users["user_id"].tolist() == ["007", "b"]
    assert hio.load_fit(d / "fit.nc", ("mu",))["posterior"]["mu"].values[1, 2] == 5.0
    assert hio.load_fit(d / "fit.nc").attrs["run_id"] == "r1"
    # a second run into the same folder replaces the exports, and only them
    (d / "report.html").write_text("<html>an older report</html>")
    with hio.staged_run(d, "run", "test") as stage:
        hio.write_run(stage, _tree(), exports, {"seed": 4})
    assert (d / "run.json").read_text().startswith('{\n  "seed": 4,\n  "run_id": "')
    assert sorted(os.listdir(d)) == sorted([*EXPORTS, "manifest.json"])
    assert sorted(os.listdir(d.parent)) == ["run"]


def test_a_manifest_that_does_not_list_an_export_is_refused(tmp_path):
    d = _run(tmp_path)
    hio.seal_run(d, "run", "test", unlisted=["weights.parquet", "users.csv"])
    message = f"{d}/manifest.json: does not list ['weights.parquet', 'users.csv']; refit into {d}"
    assert _raises(RunError, hio.check_run_dir, d) == message
    assert _raises(RunError, hio.read_run, d) == message


def test_write_run_makes_missing_parents_and_shares_the_fit_s_arrays(tmp_path, monkeypatch):
    """write_run writes into a folder it makes (parents too); the fit it saves is a shallow
    copy carrying the run id: the caller's tree is unchanged and its draws are not copied."""
    saved = {}
    real_save = hio.save_fit

    def keep(tree, target):
        saved["tree"] = tree
        return real_save(tree, target)

    monkeypatch.setattr(hio, "save_fit", keep)
    tree = _tree()
    exports = SimpleNamespace(
        population=pd.DataFrame({"feature": ["x"]}),
        weights=pd.DataFrame({"user_id": ["u"]}),
        users=pd.DataFrame({"user_id": ["u"]}),
        profiles=[],
        diagnostics={},
        calls={},
    )
    d = tmp_path / "a" / "b" / "run"
    assert hio.write_run(d, tree, exports, {"run_id": "r9"}) == d
    assert sorted(os.listdir(d)) == EXPORTS
    assert "run_id" not in tree.attrs and saved["tree"].attrs["run_id"] == "r9"
    mu = tree["posterior"]["mu"].values
    assert np.shares_memory(saved["tree"]["posterior"]["mu"].values, mu)


def test_read_optional_csv(tmp_path):
    assert hio.read_optional_csv(tmp_path / "comparison.csv") is None
    p = tmp_path / "comparison.csv"
    p.write_text("user_id,auc\n007,0.7\n")
    table = hio.read_optional_csv(str(p))
    assert table["user_id"].tolist() == ["007"]
    assert table["auc"].tolist() == [0.7]


def test_write_report(tmp_path):
    d = _run(tmp_path)
    out = hio.write_report(str(d), "<html>é</html>", {"a.png": b"\x89PNG", "b.png": b"B"})
    assert out == d / "report.html"
    assert out.read_bytes() == "<html>é</html>".encode()
    assert (d / "figures" / "a.png").read_bytes() == b"\x89PNG"
    assert (d / "figures" / "b.png").read_bytes() == b"B"
    files = hio.read_run(d).manifest.files  # the manifest lists the report's files
    assert {n: files[n].written_by for n in ("report.html", "figures/a.png")} == {
        "report.html": "hbm report",
        "figures/a.png": "hbm report",
    }
    assert files["run.json"].written_by == "test"
    # a second report replaces the first one's files, figures it no longer draws included
    hio.write_report(d, "<html>2</html>", {"b.png": b"B2"})
    assert sorted(os.listdir(d / "figures")) == ["b.png"]
    assert sorted(n for n in hio.read_run(d).manifest.files if n.startswith("figures/")) == [
        "figures/b.png"
    ]


# --- cohorts --------------------------------------------------------------------------------


def _cohort() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["s0", "s0"],
            "date": [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-12-31 18:00")],
            "migraine": [0, 1],
        }
    )


def test_write_cohort_csv_dates_and_truth(tmp_path):
    frame = _cohort()
    out = hio.write_cohort(str(tmp_path / "c.csv"), frame, {"beta": [0.5]})
    assert out == tmp_path / "c.csv"
    assert out.read_text() == "user_id,date,migraine\ns0,2025-03-01,0\ns0,2025-12-31,1\n"
    assert (tmp_path / "c.truth.json").read_text() == '{\n  "beta": [\n    0.5\n  ]\n}\n'
    assert pd.api.types.is_datetime64_any_dtype(frame["date"])  # the caller's frame is unchanged
    assert sorted(os.listdir(tmp_path)) == ["c.csv", "c.truth.json"]


@pytest.mark.parametrize("name", ["c.parquet", "c.pq", "c.Parquet", "C.PQ"])
def test_write_cohort_parquet_by_suffix(tmp_path, name):
    out = hio.write_cohort(tmp_path / name, _cohort(), {})
    assert out.read_bytes()[:4] == b"PAR1"
    assert pd.read_parquet(out)["date"].tolist() == ["2025-03-01", "2025-12-31"]
    stem = name.split(".")[0]
    assert json.loads((tmp_path / f"{stem}.truth.json").read_text()) == {}


def test_truth_path():
    assert hio.truth_path("data/x.csv") == Path("data/x.truth.json")
    assert hio.truth_path(Path("/d/cohort.v2.parquet")) == Path("/d/cohort.v2.truth.json")


def _constant_data(x: np.ndarray) -> xr.Dataset:
    return xr.Dataset(
        {"x": (("obs", "feature"), x), "user_index": ("obs", np.zeros(len(x), np.int32))},
        coords={"obs": np.arange(len(x)), "feature": ["f", "g"]},
    )


def test_exposures_are_stored_as_the_fits_codes_and_come_back_exactly():
    from hbm.results.fit_storage import X_CODES, decode_exposures, encode_exposures

    scale = np.array([0.25 / 32767, 3.0 / 32767])
    codes = np.array([[32767, -5], [-32767, 32767], [0, 17]], dtype=np.int16)
    data = _constant_data(codes * scale)
    attrs = {"exposure_scale": json.dumps({"f": scale[0], "g": scale[1]})}
    stored = encode_exposures(data, attrs)
    assert "x" not in stored and stored[X_CODES].dtype == np.int16
    np.testing.assert_array_equal(stored[X_CODES].values, codes)
    back = decode_exposures(stored)
    np.testing.assert_array_equal(back["x"].values, data["x"].values)  # bit for bit
    assert back["x"].dims == ("obs", "feature") and back["x"].dtype == np.float64
    assert decode_exposures(data) is data  # nothing encoded: as it is


@pytest.mark.parametrize(
    "attrs",
    [
        {},  # a fit saved without its scales
        {"exposure_scale": json.dumps({"f": 1.0})},  # a feature without one
        {"exposure_scale": json.dumps({"f": 1.0, "g": 1.0})},  # x is not codes x scale
        {"exposure_scale": json.dumps({"f": 1e-9, "g": 1.0})},  # codes beyond 16 bits
    ],
)
def test_exposures_that_codes_would_not_give_back_are_stored_as_they_are(attrs):
    from hbm.results.fit_storage import encode_exposures

    data = _constant_data(np.array([[0.5, 1.0], [0.25, 2.0], [0.0, 3.0]]))
    assert encode_exposures(data, attrs) is data
