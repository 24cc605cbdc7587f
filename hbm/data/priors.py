"""Load and validate a priors file into frozen dataclasses.

A priors file describes each feature (trigger) of the model: the diary column that holds its raw
value, the dose-response ("impact pattern") that maps a raw value to an exposure in [0, 1], and the
log-odds prior of its population weight and between-user spread. Nothing here knows the default
feature list: every feature comes from the file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from hbm.errors import PriorsError

#: The rule that fills in a missing ``log_odds_prior`` from ``weight_prior`` (documented in
#: priors/README.md). L is the log of the pattern's risk ratio, highest over lowest level: the
#: log-odds ratio the pattern itself claims. The clinical weight (0-1) says how much of it to
#: believe for the population mean; the SD keeps the whole claimed effect within two SDs. The
#: between-user scale is neutral about personalization: under tau ~ HalfNormal(0.45),
#: P(tau > 0.3) = 0.5, the earlier study's threshold.
NEUTRAL_BETWEEN_USER_SD = 0.45
DERIVATION_RULE = (
    "L = ln(max(pattern) / min(pattern)); mean = weight_prior * L; sd = 0.1 + 0.5 * L; "
    f"between_user_sd = {NEUTRAL_BETWEEN_USER_SD}"
)

TRANSFORMS = ("level", "change")

#: A feature's role in the model: a ``trigger`` is an exposure from the diary; the one
#: ``clustering`` feature is the previous day's attack state (``CLUSTERING_KEY``), added when the
#: priors file has a ``clustering`` block. Both are columns of the same design and weights of the
#: same partially pooled model; only what is said of them differs (no trigger class, no FDR call).
ROLES = ("trigger", "clustering")
CLUSTERING_KEY = "attack_yesterday"
#: The diary's outcome column; the clustering feature reads the previous day's attack state from
#: it (and from the optional ``migraine_continues``, ``hbm.data.diary``).
OUTCOME_COLUMN = "migraine"


@dataclass(frozen=True)
class LogOddsPrior:
    """Weight prior: ``mu ~ Normal(mean, sd)``, ``tau ~ HalfNormal(between_user_sd)``."""

    mean: float
    sd: float
    between_user_sd: float
    derived: bool


@dataclass(frozen=True)
class InterceptPrior:
    """Intercept prior: ``a0 ~ Normal(logit(base_rate), a0_sd)``, ``sigma_a ~ HalfNormal``."""

    base_rate: float = 0.15
    a0_sd: float = 1.0
    sigma_a_scale: float = 1.5

    @property
    def logit_base_rate(self) -> float:
        return math.log(self.base_rate / (1.0 - self.base_rate))


@dataclass(frozen=True)
class Feature:
    """One model feature, read from one variable of the priors file."""

    key: str
    name: str
    category: str
    group: str
    column: str
    unit: str
    range: tuple[float, float]
    levels: tuple[float, ...]
    pattern: tuple[float, ...]
    weight_prior: float
    prior: LogOddsPrior
    lag_days: int
    transform: str
    premonitory_confound: bool
    source: str
    simulation: Mapping[str, Any] | None = None
    role: str = "trigger"

    @property
    def is_trigger(self) -> bool:
        return self.role == "trigger"


@dataclass(frozen=True)
class Priors:
    """All features and the intercept prior of one priors file."""

    features: tuple[Feature, ...]
    intercept: InterceptPrior
    path: str
    document: str  # canonical JSON of the file, stored in every fit's attrs

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.features)

    @property
    def columns(self) -> tuple[str, ...]:
        """Diary columns the trigger features read, each once, in file order (the clustering
        feature reads the outcome)."""
        return tuple(dict.fromkeys(f.column for f in self.features if f.is_trigger))

    @property
    def groups(self) -> tuple[str, ...]:
        """Groups of the trigger features, in file order."""
        return tuple(dict.fromkeys(f.group for f in self.features if f.is_trigger))

    @property
    def clustering(self) -> Feature | None:
        """The clustering feature (the previous day's attack state), if the model has it."""
        return next((f for f in self.features if f.role == "clustering"), None)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.document.encode()).hexdigest()

    def feature(self, key: str) -> Feature:
        for f in self.features:
            if f.key == key:
                return f
        raise KeyError(key)

    def column_range(self, column: str) -> tuple[float, float]:
        return next(f.range for f in self.features if f.column == column)

    def weight_priors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per feature, in file order: ``mu``'s prior mean and SD and ``tau``'s HalfNormal scale."""
        return (
            np.array([f.prior.mean for f in self.features], dtype=float),
            np.array([f.prior.sd for f in self.features], dtype=float),
            np.array([f.prior.between_user_sd for f in self.features], dtype=float),
        )


def without_clustering(priors: Priors) -> Priors:
    """The same priors without the clustering term (``hbm fit --clustering off``)."""
    if priors.clustering is None:
        return priors
    doc = json.loads(priors.document)
    doc.pop("clustering", None)
    return replace(
        priors,
        features=tuple(f for f in priors.features if f.is_trigger),
        document=json.dumps(doc, sort_keys=True, ensure_ascii=False),
    )


def clustering_feature(block: Mapping[str, Any]) -> Feature:
    """The clustering feature of a priors file's ``clustering`` block.

    Its exposure is 1 on a day whose previous day was an attack day (an onset, or a continuing
    attack), 0 after an attack-free day; a previous day not logged is unknown (centred 0, see
    ``hbm.data.exposures``). Its weight is the log-odds ratio between the two.
    """
    prior = block["log_odds_prior"]
    return Feature(
        key=CLUSTERING_KEY,
        name="Attack the day before",
        category="History",
        group="history",
        column=OUTCOME_COLUMN,
        unit="1 if the previous day was an attack day (onset or continuing attack), else 0",
        range=(0.0, 1.0),
        levels=(0.0, 1.0),
        pattern=(1.0, 2.0),
        weight_prior=1.0,
        prior=LogOddsPrior(
            mean=float(prior["mean"]),
            sd=float(prior["sd"]),
            between_user_sd=float(prior["between_user_sd"]),
            derived=False,
        ),
        lag_days=1,
        transform="level",
        premonitory_confound=False,
        source=str(block["source"]),
        role="clustering",
    )


def default_priors_path() -> Path:
    """Path of the shipped clinical priors file."""
    return Path(str(resources.files("hbm") / "resources" / "migraine_features.json"))


def _schema() -> dict[str, Any]:
    text = (resources.files("hbm") / "resources" / "migraine_features.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def derive_log_odds_prior(pattern: tuple[float, ...], weight_prior: float) -> LogOddsPrior:
    """Log-odds prior from the clinical weight and the impact pattern (see ``DERIVATION_RULE``)."""
    span = math.log(max(pattern) / min(pattern))
    return LogOddsPrior(
        mean=weight_prior * span,
        sd=0.1 + 0.5 * span,
        between_user_sd=NEUTRAL_BETWEEN_USER_SD,
        derived=True,
    )


def _where(path: str, doc: Any, location: list[str | int]) -> str:
    """Human-readable place of a schema error: file, feature key and field."""
    if len(location) >= 2 and location[0] == "variables" and isinstance(location[1], int):
        idx = location[1]
        key = "?"
        variables = doc.get("variables") if isinstance(doc, dict) else None
        if (
            isinstance(variables, list)
            and idx < len(variables)
            and isinstance(variables[idx], dict)
        ):
            key = str(variables[idx].get("key", "?"))
        field = ".".join(str(p) for p in location[2:]) or "(the variable itself)"
        return f"{path}: feature '{key}' (variables[{idx}]), field '{field}'"
    field = ".".join(str(p) for p in location) or "(top level)"
    return f"{path}: field '{field}'"


def _schema_error_message(path: str, doc: Any, err: jsonschema.ValidationError) -> str:
    location = list(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [r for r in err.validator_value if r not in err.instance]
        where = _where(path, doc, [*location, missing[0]])
        return f"{where}: required field is missing (required: {', '.join(err.validator_value)})"
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        where = _where(path, doc, [*location, extra[0]])
        return f"{where}: unknown field; allowed fields: {', '.join(allowed)}"
    where = _where(path, doc, location)
    if err.validator == "enum":
        return f"{where}: {err.instance!r} is not allowed; allowed: {err.validator_value}"
    described = err.schema.get("description") if isinstance(err.schema, dict) else None
    hint = f" (expected: {described})" if described else ""
    return f"{where}: {err.message}{hint}"


def _check_variable(path: str, doc: Any, idx: int, var: dict[str, Any]) -> None:
    def fail(field: str, msg: str) -> PriorsError:
        return PriorsError(f"{_where(path, doc, ['variables', idx, field])}: {msg}")

    levels, pattern = var["levels"], var["migraine_impact_pattern"]
    if any(b <= a for a, b in itertools.pairwise(levels)):
        raise fail("levels", f"levels must be strictly increasing, got {levels}")
    if len(pattern) != len(levels):
        raise fail(
            "migraine_impact_pattern",
            f"needs one relative risk per level ({len(levels)} levels), got {len(pattern)} values",
        )
    if max(pattern) == min(pattern):
        raise fail(
            "migraine_impact_pattern",
            "the pattern is constant, so no level is riskier than another; give at least two "
            "different relative risks",
        )
    lo, hi = var["range"]
    if not lo < hi:
        raise fail("range", f"range must be [low, high] with low < high, got {var['range']}")
    if var["transform"] == "level" and (levels[-1] < lo or levels[0] > hi):
        raise fail("levels", f"levels {levels} lie wholly outside the range {var['range']}")


def load_priors(path: str | Path | None = None) -> Priors:
    """Load and validate a priors file.

    Parameters
    ----------
    path
        JSON priors file; ``None`` loads the shipped clinical priors.

    Returns
    -------
    Priors
        Frozen dataclasses, one ``Feature`` per variable in file order.

    Raises
    ------
    PriorsError
        On an unreadable file, invalid JSON or any rule violation; the message names the file,
        the feature key, the field and what is allowed.
    """
    p = Path(path) if path is not None else default_priors_path()
    shown = str(path) if path is not None else str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriorsError(f"{shown}: priors file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PriorsError(f"{shown}: cannot read priors file ({exc})") from None
    return parse_priors(text, shown)


def _feature(var: Mapping[str, Any], key: str, column: str, rng: tuple[float, float]) -> Feature:
    """One schema-valid variable of a priors file as a ``Feature`` (its prior derived if absent)."""
    pattern = tuple(float(v) for v in var["migraine_impact_pattern"])
    explicit = var.get("log_odds_prior")
    prior = (
        LogOddsPrior(
            mean=float(explicit["mean"]),
            sd=float(explicit["sd"]),
            between_user_sd=float(explicit["between_user_sd"]),
            derived=False,
        )
        if explicit is not None
        else derive_log_odds_prior(pattern, float(var["weight_prior"]))
    )
    return Feature(
        key=key,
        name=var["name"],
        category=var["category"],
        group=var["group"],
        column=column,
        unit=var["unit"],
        range=rng,
        levels=tuple(float(v) for v in var["levels"]),
        pattern=pattern,
        weight_prior=float(var["weight_prior"]),
        prior=prior,
        lag_days=int(var["lag_days"]),
        transform=var["transform"],
        premonitory_confound=bool(var.get("premonitory_confound", False)),
        source=var["source"],
        simulation=var.get("simulation"),
    )


def _first_non_finite(obj: Any, location: list[str | int]) -> tuple[list[str | int], float] | None:
    """The place and value of the first NaN or infinity in a parsed JSON document, if any.

    Python's JSON reader accepts ``NaN`` and ``Infinity`` and reads ``1e999`` as infinity; the
    schema's bounds cannot refuse them (every comparison with NaN is false).
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return location, obj
    children = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for key, child in children:
        found = _first_non_finite(child, [*location, key])
        if found is not None:
            return found
    return None


def parse_priors(text: str, shown: str = "<priors>") -> Priors:
    """Validate the text of a priors file; ``shown`` names it in error messages."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PriorsError(
            f"{shown}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None

    bad = _first_non_finite(doc, [])
    if bad is not None:
        location, value = bad
        raise PriorsError(
            f"{_where(shown, doc, location)}: got {value}, not a finite number; give a finite "
            "number (JSON has no NaN or Infinity, and a number beyond 1.8e308 reads as infinite)"
        )
    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(x) for x in e.absolute_path])
    if errors:
        raise PriorsError(_schema_error_message(shown, doc, errors[0]))

    seen: dict[str, int] = {}
    ranges: dict[str, tuple[tuple[float, float], str]] = {}
    features = []
    for idx, var in enumerate(doc["variables"]):
        key = var["key"]
        if key in seen:
            raise PriorsError(
                f"{_where(shown, doc, ['variables', idx, 'key'])}: duplicate key; '{key}' is "
                f"already used by variables[{seen[key]}]; keys must be unique"
            )
        seen[key] = idx
        _check_variable(shown, doc, idx, var)
        column = var.get("column", key)
        rng = (float(var["range"][0]), float(var["range"][1]))
        if column in ranges and ranges[column][0] != rng:
            other_range, other_key = ranges[column]
            raise PriorsError(
                f"{_where(shown, doc, ['variables', idx, 'range'])}: column '{column}' is also "
                f"read by feature '{other_key}' with range {list(other_range)}; one column has "
                "one range"
            )
        ranges.setdefault(column, (rng, key))
        features.append(_feature(var, key, column, rng))
    reserved = {"user_id", "date", OUTCOME_COLUMN, "migraine_continues"}
    if CLUSTERING_KEY in seen:
        raise PriorsError(
            f"{_where(shown, doc, ['variables', seen[CLUSTERING_KEY], 'key'])}: the key "
            f"'{CLUSTERING_KEY}' is the clustering term's; give the variable another key"
        )
    for f in features:
        if f.column in reserved:
            raise PriorsError(
                f"{_where(shown, doc, ['variables', seen[f.key], 'column'])}: column "
                f"'{f.column}' is reserved for the diary's own fields {sorted(reserved)}"
            )
    icpt = doc.get("intercept", {})
    intercept = InterceptPrior(
        base_rate=float(icpt.get("base_rate", InterceptPrior.base_rate)),
        a0_sd=float(icpt.get("a0_sd", InterceptPrior.a0_sd)),
        sigma_a_scale=float(icpt.get("sigma_a_scale", InterceptPrior.sigma_a_scale)),
    )
    if "clustering" in doc:
        features.append(clustering_feature(doc["clustering"]))
    return Priors(
        features=tuple(features),
        intercept=intercept,
        path=shown,
        document=json.dumps(doc, sort_keys=True, ensure_ascii=False),
    )
