"""Arguments and output paths checked before anything is read or sampled (issue 22, cases 4, 7,
12, 13 and 14): bad input is exit 2 with one line ``error: ...``, a place hbm cannot write in is
exit 4, and no writer overwrites an input. Messages are written out by hand."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from hbm.app.cli import main
from hbm.errors import EXIT_INPUT, EXIT_STORAGE
from hbm.results import io

from ..conftest import small_diary_frame, small_priors_doc, write_csv, write_priors

TINY = ["--chains", "1", "--tune", "5", "--draws", "5", "--no-progress"]


@pytest.fixture()
def inputs(tmp_path):
    """A small priors file and a valid diary for it: (priors, diary)."""
    return write_priors(tmp_path, small_priors_doc()), write_csv(tmp_path, small_diary_frame())


@pytest.fixture()
def no_sampling(monkeypatch):
    """Make any sampling fail the test: every check here must come first."""
    from hbm.inference import fitting

    def refuse(*args, **kwargs):
        raise AssertionError("the fit started before the arguments were checked")

    monkeypatch.setattr(fitting, "fit", refuse)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err.rstrip("\n").removeprefix("error: ")


def _fit(inputs, out, *extra: str) -> int:
    priors, diary = inputs
    return main(["fit", str(diary), "--priors", str(priors), "--out", str(out), *TINY, *extra])


# --- case 7: hbm fit's output folder and settings ----------------------------------------------


def test_fit_out_inside_a_file_is_refused_before_sampling(inputs, no_sampling, capsys):
    diary = inputs[1]
    out = diary / "run"
    assert _fit(inputs, out) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--out {out}: {diary} is a file, so nothing can be made inside it"
    )


def test_fit_out_that_is_a_file_is_refused(inputs, no_sampling, tmp_path, capsys):
    out = tmp_path / "notes.txt"
    out.write_text("mine")
    assert _fit(inputs, out) == EXIT_INPUT
    assert (
        _one_line_error(capsys) == f"--out {out}: is a file; give a folder (it is made if absent)"
    )
    assert out.read_text() == "mine"


def test_fit_out_holding_the_diary_is_refused(inputs, no_sampling, tmp_path, capsys):
    assert _fit(inputs, tmp_path) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--out {tmp_path}: holds the input {inputs[1]}, which writing there would overwrite or "
        "remove; give another folder"
    )


@pytest.fixture()
def read_only(tmp_path):
    """A folder no file can be created in: permission bits for a user; for root (whom they do
    not stop), /sys, a file system that refuses new files."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    folder = Path("/sys")
    try:
        (folder / "hbm-probe").touch()
    except OSError:
        yield folder
        return
    pytest.skip("no read-only folder on this machine")


def test_fit_out_in_a_read_only_folder_is_exit_4_before_sampling(
    inputs, no_sampling, read_only, capsys
):
    out = read_only / "hbm-run"
    assert _fit(inputs, out) == EXIT_STORAGE
    err = _one_line_error(capsys)
    assert err.startswith(f"--out {out}: cannot write in {read_only} (")
    assert not out.exists()


@pytest.mark.parametrize("bad", ["1.5", "0", "1", "-0.1", "nan"])
def test_fit_ci_prob_outside_0_1_is_refused_before_sampling(
    inputs, no_sampling, tmp_path, capsys, bad
):
    assert _fit(inputs, tmp_path / "run", "--ci-prob", bad) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--ci-prob must be a probability strictly between 0 and 1, got {float(bad)}"
    )
    assert not (tmp_path / "run").exists()


def test_a_config_file_ci_prob_is_checked_too(inputs, no_sampling, tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text("ci-prob = 1.5\n")
    assert _fit(inputs, tmp_path / "run", "--config", str(config)) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"{config}: --ci-prob must be a probability strictly between 0 and 1, got 1.5"
    )
    # a flag that overrides the file's bad value is what counts
    assert _fit(inputs, tmp_path / "run", "--config", str(config), "--ci-prob", "2") == EXIT_INPUT
    assert _one_line_error(capsys) == (
        "--ci-prob must be a probability strictly between 0 and 1, got 2.0"
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "-1"], "--seed must be an integer from 0 to 4294967295, got -1"),
        (["--seed", str(2**32)], "--seed must be an integer from 0 to 4294967295, got 4294967296"),
        (["--min-days", "-1"], "--min-days must be at least 0, got -1"),
        (["--chains", "0"], "invalid sampler settings: chains must be >= 1, got 0"),
    ],
)
def test_fit_settings_out_of_range_are_refused_before_sampling(
    inputs, no_sampling, tmp_path, capsys, flags, message
):
    assert _fit(inputs, tmp_path / "run", *flags) == EXIT_INPUT
    assert _one_line_error(capsys) == message


def test_compare_out_inside_a_file_is_refused(inputs, no_sampling, capsys):
    priors, diary = inputs
    out = diary / "cmp"
    args = ["compare", str(diary), "--priors", str(priors), "--out", str(out), *TINY]
    assert main(args) == EXIT_INPUT
    assert (
        _one_line_error(capsys)
        == f"--out {out}: {diary} is a file, so nothing can be made inside it"
    )


def test_study_out_inside_a_file_is_refused(inputs, capsys):
    out = inputs[1] / "study"
    assert main(["study", "--quick", "--out", str(out)]) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--out {out}: {inputs[1]} is a file, so nothing can be made inside it"
    )


# --- case 14: hbm simulate writes only what hbm validate reads -------------------------------


@pytest.mark.parametrize("name", ["x.txt", "x.csv.gz", "x", "x.json"])
def test_simulate_out_of_a_kind_validate_refuses_is_refused(tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["simulate", "--users", "2", "--days", "3", "--out", str(out)]) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--out {out}: a simulated diary is written as .csv, .parquet, .pq, the names hbm reads "
        "back; give one of those"
    )
    assert not out.exists()


def test_simulate_out_that_is_a_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "x.csv"
    out.mkdir()
    assert main(["simulate", "--users", "2", "--days", "3", "--out", str(out)]) == EXIT_INPUT
    assert _one_line_error(capsys) == f"--out {out}: is a folder; give a file name"


def test_simulated_diaries_validate(tmp_path, capsys):
    for name in ("x.csv", "x.parquet", "x.pq"):
        out = tmp_path / name
        assert main(["simulate", "--users", "2", "--days", "3", "--out", str(out)]) == 0
        assert main(["validate", str(out)]) == 0


def test_a_diary_simulated_with_every_realism_option_validates(tmp_path, capsys):
    out = tmp_path / "x.csv"
    realism = ["--clustering", "1.5", "--attack-days", "1.5", "--premonitory", "fatigue,neck_pain"]
    missing = ["--missing-days", "0.1", "--missing-values", "0.02"]
    args = ["simulate", "--users", "6", "--days", "60", *realism, *missing, "--out", str(out)]
    assert main(args) == 0
    assert "fit it with --missing impute or drop" in capsys.readouterr().out
    truth = json.loads(io.truth_path(out).read_text())
    assert truth["config"]["premonitory"] == ["fatigue", "neck_pain"]
    assert truth["config"]["attack_days"] == 1.5 and truth["config"]["missing_values"] == 0.02
    assert truth["kinds"]["neck_pain"] == "premonitory"
    assert "migraine_continues" in pd.read_csv(out).columns
    assert main(["validate", str(out)]) == EXIT_INPUT  # empty values: --missing error refuses
    capsys.readouterr()
    assert main(["validate", str(out), "--missing", "impute"]) == 0


def test_simulate_refuses_a_premonitory_feature_it_cannot_raise(tmp_path, capsys):
    out = tmp_path / "x.csv"
    args = ["simulate", "--users", "2", "--days", "3", "--premonitory", "temperature"]
    assert main([*args, "--out", str(out)]) == EXIT_INPUT
    assert _one_line_error(capsys).startswith(
        "invalid simulation settings: premonitory feature 'temperature' cannot be raised before "
        "attacks"
    )
    assert not out.exists()


# --- cases 12 and 14: hbm validate -----------------------------------------------------------


def test_impute_on_an_all_empty_column_is_refused(inputs, tmp_path, capsys):
    priors, _ = inputs
    frame = small_diary_frame()
    frame["chocolate"] = ""
    diary = write_csv(tmp_path, frame, "empty.csv")
    assert main(["validate", str(diary), "--priors", str(priors), "--missing", "impute"]) == 2
    assert _one_line_error(capsys) == (
        f"{diary}: column 'chocolate' has no values at all; missing='impute' needs at least one "
        "number to take a median of"
    )


def test_validate_warns_of_one_user_and_an_outcome_that_never_varies(inputs, tmp_path, capsys):
    priors, _ = inputs
    frame = small_diary_frame(n_users=1)
    frame["migraine"] = "0"
    diary = write_csv(tmp_path, frame, "one.csv")
    assert main(["validate", str(diary), "--priors", str(priors)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "warning: migraine is 0 on every row: with no contrast between attack and attack-free "
        "days, the weights are learned from the priors alone",
        "warning: one user only ('p0'): how much users differ (tau) cannot be learned from one "
        "user, so it stays at its prior",
    ]
    assert captured.out.endswith("valid\n")


def test_validate_of_gzip_bytes_in_a_csv_is_one_clear_line(inputs, tmp_path, capsys):
    import gzip

    priors, diary = inputs
    packed = tmp_path / "packed.csv"
    packed.write_bytes(gzip.compress(diary.read_bytes()))
    assert main(["validate", str(packed), "--priors", str(priors)]) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"{packed}: is gzip-compressed; name it .csv.gz (hbm reads gzip-compressed CSV) or "
        "decompress it"
    )
    renamed = tmp_path / "packed.csv.gz"
    packed.rename(renamed)
    assert main(["validate", str(renamed), "--priors", str(priors)]) == 0


# --- cases 4 and 13: hbm predict and hbm report over a run ----------------------------------


def test_predict_refuses_to_overwrite_its_own_diary(workspace, capsys):
    _, _, diary, run = workspace
    before = diary.read_bytes()
    assert main(["predict", str(run), str(diary), "--out", str(diary)]) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--out {diary}: is the input {diary}, which writing would overwrite; give another file "
        "name"
    )
    assert diary.read_bytes() == before


def test_predict_refuses_to_overwrite_a_file_of_the_run(workspace, capsys):
    _, _, diary, run = workspace
    target = run / "weights.csv"
    before = target.read_bytes()
    assert main(["predict", str(run), str(diary), "--out", str(target)]) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--out {target}: is a file of the run folder {run}, an input; give a file outside it"
    )
    assert target.read_bytes() == before


def test_predict_out_that_is_a_folder_is_refused(workspace, tmp_path, capsys):
    _, _, diary, run = workspace
    assert main(["predict", str(run), str(diary), "--out", str(tmp_path)]) == EXIT_INPUT
    assert _one_line_error(capsys) == f"--out {tmp_path}: is a folder; give a file name"


@pytest.mark.parametrize("bad", ["1.5", "0", "1", "nan"])
def test_predict_ci_prob_outside_0_1_is_refused(workspace, tmp_path, capsys, bad):
    _, _, diary, run = workspace
    out = tmp_path / "pred.csv"
    args = ["predict", str(run), str(diary), "--out", str(out), "--ci-prob", bad]
    assert main(args) == EXIT_INPUT
    assert _one_line_error(capsys) == (
        f"--ci-prob must be a probability strictly between 0 and 1, got {float(bad)}"
    )
    assert not out.exists()


def test_predict_with_a_ci_prob_inside_0_1_writes(workspace, tmp_path):
    _, _, diary, run = workspace
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(diary), "--out", str(out), "--ci-prob", "0.5"]) == 0
    assert len(pd.read_csv(out)) == 300


def test_report_days_users_below_one_is_refused(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--days-users", "0"]) == EXIT_INPUT
    assert _one_line_error(capsys) == "--days-users must be at least 1, got 0"


@pytest.mark.parametrize("bad", ["0", "1", "1.5", "-0.1", "nan"])
def test_fdr_level_outside_0_1_is_refused_before_anything_is_read(tmp_path, bad, capsys):
    code = main(
        ["fit", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "r"), "--fdr-level", bad]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --fdr-level must be a probability strictly between 0 and 1")


@pytest.mark.parametrize(
    ("value", "why"),
    [("", "has an empty feature key"), ("fatigue,", "has an empty feature key"),
     ("fatigue,fatigue", "names a feature more than once")],
)  # fmt: skip
def test_simulate_premonitory_keys_are_each_given_once(tmp_path, value, why, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["simulate", "--premonitory", value, "--out", str(tmp_path / "s.csv")])
    assert stop.value.code == 2
    assert why in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
