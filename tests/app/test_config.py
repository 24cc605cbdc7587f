"""The run configuration file (``hbm fit --config``): layering, errors, the recorded document.

No test here samples: every error is raised before a diary is read.
"""

from __future__ import annotations

import tomllib

import pytest

from hbm.app.cli import main
from hbm.app.config import FitConfig, document, parse_config, resolve
from hbm.app.parser import DEMO_DIARY, build_parser, fit_config
from hbm.results import io


def _config(args: list[str], diary_default=None) -> FitConfig:
    return fit_config(build_parser().parse_args(args), diary_default)


def test_flags_given_override_the_file_and_the_file_overrides_the_defaults(tmp_path):
    cfg = tmp_path / "run" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        'diary = "data/diary.csv"\nchains = 3\ndraws = 50\nseed = 11\nstrict = true\n'
        'ci-kind = "hdi"\n\n[map]\npatient = "user_id"\n'
    )
    got = _config(["fit", "--config", str(cfg), "--draws", "70", "--no-strict", "--out", "x"])
    assert got == FitConfig(
        diary=str(tmp_path / "run" / "data" / "diary.csv"),  # relative to the file's folder
        column_map=(("patient", "user_id"),),
        chains=3,
        draws=70,  # the flag, not the file's 50
        seed=11,
        ci_kind="hdi",
        strict=False,  # --no-strict over strict = true
    )
    # everything neither gives keeps its default
    assert (got.backend, got.tune, got.target_accept, got.max_treedepth) == ("nutpie", None, 0.9, 8)
    assert (got.missing, got.min_days, got.pooling, got.ci_prob) == ("error", 30, "partial", 0.9)
    # a positional DIARY and --map replace the file's diary and its [map] table
    args = ["fit", "other.csv", "--config", str(cfg), "--map", "who=user_id", "--out", "x"]
    again = _config(args)
    assert again.diary == "other.csv" and again.column_map == (("who", "user_id"),)
    assert again.draws == 50 and again.strict is True


def test_without_a_file_the_flags_and_defaults_are_the_configuration():
    got = _config(["fit", "d.csv", "--chains", "2", "--no-progress", "--out", "x"])
    assert got == FitConfig(diary="d.csv", chains=2, progress=False)


def test_demo_takes_the_shipped_diary_unless_the_file_or_a_flag_names_one(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("seed = 5\n")
    assert _config(["demo", "--config", str(cfg)], DEMO_DIARY).diary == str(DEMO_DIARY)
    assert DEMO_DIARY.is_absolute() and DEMO_DIARY.is_file()  # hbm demo from any folder
    cfg.write_text('diary = "/abs/mine.csv"\n')
    assert _config(["demo", "--config", str(cfg)], DEMO_DIARY).diary == "/abs/mine.csv"
    args = ["demo", "--config", str(cfg), "--diary", "flag.csv"]
    assert _config(args, DEMO_DIARY).diary == "flag.csv"


def test_unknown_key_is_an_error_naming_the_file_and_the_key(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("chains = 2\nchain = 4\n")
    out = tmp_path / "run"
    assert main(["fit", "d.csv", "--config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg}: unknown key 'chain' (did you mean 'chains'?); the keys ")
    assert "min-days, backend, chains, tune, draws, target-accept," in err
    assert not out.exists()
    cfg.write_text("[sampler]\nchains = 2\n")
    assert main(["fit", "d.csv", "--config", str(cfg), "--out", str(out)]) == 2
    assert f"{cfg}: unknown key 'sampler'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('chains = "four"', "key 'chains' must be an integer, got 'four' (a string)"),
        ("chains = 2.0", "key 'chains' must be an integer, got 2.0 (a float)"),
        ("tune = true", "key 'tune' must be an integer, got True (a boolean)"),
        ("ci-prob = true", "key 'ci-prob' must be a finite number, got True (a boolean)"),
        ("ci-prob = nan", "key 'ci-prob' must be a finite number, got nan (a float)"),
        ("strict = 1", "key 'strict' must be true or false, got 1 (an integer)"),
        ("diary = 3", "key 'diary' must be a path (a string), got 3 (an integer)"),
        (
            'backend = "stan"',
            "key 'backend' must be one of 'nutpie', 'pymc', 'numpyro', got 'stan' (a string)",
        ),
        ("pooling = 1", "key 'pooling' must be one of 'partial', 'none', 'complete', got 1"),
        ('map = "a=b"', "key 'map' must be a table of FILE_COLUMN = \"HBM_COLUMN\" strings"),
        ('[map]\npatient = "user_id"\nchains = 2', "key 'map.chains' must be a string"),
    ],
)
def test_wrong_type_is_an_error_naming_the_file_the_key_and_what_was_expected(
    tmp_path, capsys, line, message
):
    cfg = tmp_path / "c.toml"
    cfg.write_text(line + "\n")
    assert main(["fit", "d.csv", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"error: {cfg}: {message}" in err


def test_unreadable_file_and_missing_diary_are_errors(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("seed = 1\nchains =\n")
    assert main(["fit", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"error: {cfg}: not valid TOML: " in err and "(at line 2, column 9)" in err
    assert main(["fit", "--config", str(tmp_path / "none.toml"), "--out", "r"]) == 2
    assert f"{tmp_path / 'none.toml'}: config file not found" in capsys.readouterr().err
    cfg.write_text("seed = 1\n")
    assert main(["fit", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "no diary: give DIARY or `diary = " in capsys.readouterr().err


def test_recorded_document_has_absolute_paths_and_the_backends_tune(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = FitConfig(diary="d.csv", column_map=(("who", "user_id"),), seed=9)
    doc = document(config)
    assert doc["diary"] == str(tmp_path / "d.csv")
    assert doc["tune"] == 600  # nutpie's warm-up (README, `--tune` help)
    assert "priors" not in doc  # the shipped file
    assert doc["map"] == {"who": "user_id"} and list(doc)[-1] == "map"
    # written and read back through the io writers, it is the same configuration
    path = io.write_toml(tmp_path / "run" / "config.toml", doc, "line one\nline two")
    text = path.read_text()
    assert text.startswith("# line one\n# line two\n")
    assert tomllib.loads(text) == doc
    again = resolve(parse_config(io.read_toml(path), str(path), path.parent))
    assert again == FitConfig(
        diary=str(tmp_path / "d.csv"), column_map=(("who", "user_id"),), seed=9, tune=600
    )
    assert document(again) == doc
