"""Priors file: the shipped file, the schema, derived priors and every kind of violation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hbm.data.priors import DERIVATION_RULE, derive_log_odds_prior, load_priors
from hbm.errors import PriorsError

from ..conftest import DEFAULT_PRIORS, REPO, small_priors_doc, write_priors


def test_shipped_priors_follow_schema_and_evidence(priors):
    doc = json.loads(DEFAULT_PRIORS.read_text())
    schema = json.loads((REPO / "priors" / "migraine_features.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert 15 <= len(priors.features) <= 25
    for f in priors.features:
        assert f.source.strip(), f.key
        assert not f.prior.derived, f"{f.key}: the shipped file states every prior explicitly"
        if f.group not in ("hormonal", "history"):
            # Outside menstruation population effects are small (evidence file); the clustering
            # term is no trigger (its prior: priors/README.md).
            assert abs(f.prior.mean) <= 0.35, f.key
        if f.premonitory_confound:
            assert abs(f.prior.mean) <= 0.1, f"{f.key}: premonitory features get cautious means"
    assert set(priors.groups) <= {"stress", "sleep_debt", "hormonal", "environmental", "lifestyle"}
    assert priors.feature("stress_letdown").column == "stress_level"
    # the clustering term: on in the shipped file, last, reading the outcome one day back
    assert priors.clustering is priors.features[-1]
    assert (priors.clustering.key, priors.clustering.lag_days) == ("attack_yesterday", 1)
    assert "migraine" not in priors.columns


def test_default_path_loads_the_same_file(priors):
    assert load_priors().keys == priors.keys


def test_missing_log_odds_prior_is_derived_by_the_documented_rule(small_priors):
    f = small_priors.feature("chocolate")
    assert f.prior.derived
    expected = derive_log_odds_prior((1.0, 1.3), 0.2)
    assert f.prior == expected
    # L = ln(1.3): mean = 0.2 L, sd = 0.1 + 0.5 L, between = 0.45 (neutral)
    assert f.prior.mean == pytest.approx(0.2 * 0.262364, rel=1e-4)
    assert f.prior.sd == pytest.approx(0.1 + 0.5 * 0.262364, rel=1e-4)
    assert f.prior.between_user_sd == pytest.approx(0.45)
    assert "weight_prior" in DERIVATION_RULE


def _var(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return next(v for v in doc["variables"] if v["key"] == key)


def _set(key: str, field: str, value: Any):
    def edit(doc):
        _var(doc, key)[field] = value

    return edit


def _delete(key: str, field: str):
    def edit(doc):
        del _var(doc, key)[field]

    return edit


def _duplicate_key(doc):
    doc["variables"].append(copy.deepcopy(doc["variables"][0]))


def _conflicting_range(doc):
    extra = copy.deepcopy(_var(doc, "pressure_drop"))
    extra["key"] = "pressure_level"
    extra["transform"] = "level"
    extra["levels"] = [950, 1050]
    extra["range"] = [800, 1100]
    doc["variables"].append(extra)


MALFORMED = [
    # (id, edit, expected substrings of the message)
    ("missing source", _delete("screen_hours", "source"), ["screen_hours", "'source'"]),
    (
        "weight above 1",
        _set("chocolate", "weight_prior", 1.5),
        ["chocolate", "weight_prior", "1.5"],
    ),
    ("unknown transform", _set("screen_hours", "transform", "log"), ["transform", "allowed"]),
    ("levels not increasing", _set("screen_hours", "levels", [0, 10, 4]), ["levels", "increasing"]),
    (
        "pattern length",
        _set("screen_hours", "migraine_impact_pattern", [1.0, 1.5]),
        ["migraine_impact_pattern", "3 levels"],
    ),
    (
        "constant pattern",
        _set("screen_hours", "migraine_impact_pattern", [1.2, 1.2, 1.2]),
        ["migraine_impact_pattern", "constant"],
    ),
    ("duplicate key", _duplicate_key, ["duplicate key", "screen_hours"]),
    ("bad key", _set("chocolate", "key", "Chocolate Bar"), ["field 'key'", "does not match"]),
    ("unknown field", _set("chocolate", "colour", "brown"), ["colour", "allowed fields"]),
    ("range reversed", _set("screen_hours", "range", [16, 0]), ["range", "low < high"]),
    ("conflicting ranges", _conflicting_range, ["pressure_level", "column 'pressure'"]),
    (
        "negative spread",
        _set("screen_hours", "log_odds_prior", {"mean": 0, "sd": 0.2, "between_user_sd": -1}),
        ["screen_hours", "log_odds_prior.between_user_sd"],
    ),
    ("reserved column", _set("chocolate", "column", "migraine"), ["chocolate", "reserved"]),
    (
        "negative relative risk",
        _set("chocolate", "migraine_impact_pattern", [1.0, -1]),
        ["migraine_impact_pattern.1", "chocolate"],
    ),
]


@pytest.mark.parametrize(("case", "edit", "expected"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_priors_name_file_feature_and_field(tmp_path, case, edit, expected):
    doc = small_priors_doc()
    edit(doc)
    path = write_priors(tmp_path, doc)
    with pytest.raises(PriorsError) as info:
        load_priors(path)
    msg = str(info.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg, f"{case}: {part!r} not in {msg!r}"


def test_priors_file_not_found(tmp_path):
    with pytest.raises(PriorsError, match="priors file not found"):
        load_priors(tmp_path / "nope.json")


def test_priors_invalid_json_names_line(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"variables": [\n  {"key": "x",}\n]}')
    with pytest.raises(PriorsError, match=r"broken.json: not valid JSON at line 2"):
        load_priors(p)


def test_priors_without_variables(tmp_path):
    p = write_priors(tmp_path, {"variables": []})
    with pytest.raises(PriorsError, match="field 'variables'"):
        load_priors(p)


def test_custom_features_only_come_from_the_file(small_priors: Any, tmp_path: Path):
    assert small_priors.keys == ("screen_hours", "chocolate", "pressure_drop")
    assert small_priors.columns == ("screen_hours", "chocolate", "pressure")
