"""The run configuration of ``hbm fit`` and ``hbm demo``: one TOML file, one key per flag.

A configuration is resolved in layers, later ones winning (``resolve``): ``FitConfig``'s
defaults, a file (``--config FILE.toml``, ``read_config``), the flags given on the command line.
Every key is the long name of a flag of ``hbm fit`` without its leading dashes
(``max-treedepth = 8`` is ``--max-treedepth 8``), plus ``diary`` (the positional DIARY) and a
``[map]`` table (one ``FILE_COLUMN = "HBM_COLUMN"`` per ``--map``). Relative paths in a file are
relative to the file's folder. A run folder records its resolved configuration as
``config.toml`` (``document``; absolute paths, ``tune`` resolved), so that
``hbm fit --config RUN/config.toml --out RUN2`` fits the same diary with the same settings.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hbm.data.diary import MISSING_POLICIES, MissingPolicy
from hbm.defaults import CI_KIND, CI_KINDS, CI_PROB, FDR_LEVEL, MIN_DAYS, CiKind
from hbm.errors import ConfigError
from hbm.inference.config import BACKENDS, DEFAULT_BACKEND, SamplerConfig
from hbm.model.options import PARAMETERIZATIONS, POOLINGS, Parameterization, Pooling
from hbm.results import io

#: The comment at the head of a recorded ``config.toml``.
CONFIG_COMMENT = (
    "The resolved configuration of an hbm fit; every key is a flag of `hbm fit`.\n"
    "Rerun: hbm fit --config THIS_FILE --out NEW_RUN_DIR (flags given override the file)."
)


@dataclass(frozen=True)
class FitConfig:
    """Everything ``hbm fit`` needs besides its output folder; one key of ``config.toml`` each.

    Attributes
    ----------
    diary, priors
        Paths; ``priors=None`` is the shipped clinical priors file.
    column_map
        The ``--map`` renames as (file column, hbm column) pairs.
    tune
        Warm-up per chain; ``None`` is the backend's own length (``SamplerConfig.tune_steps``).
    progress
        Show the sampler's progress bar (``--no-progress`` turns it off).
    missing, min_days, backend, chains, draws, target_accept, max_treedepth, seed, pooling, \
parameterization, ci_prob, ci_kind, strict
        The flags of the same names.
    extend_budget
        Seconds the gate's second try may take (``SamplerConfig.extend_budget_s``; 0: never).
    fdr_level
        The level of the trigger calls' expected false-discovery proportion
        (``hbm.results.calls``).
    clustering
        ``"on"``: the attack-clustering term when the priors file has one; ``"off"`` leaves it
        out (``hbm.data.priors.without_clustering``).
    """

    diary: str | None = None
    priors: str | None = None
    column_map: tuple[tuple[str, str], ...] = ()
    missing: MissingPolicy = "error"
    min_days: int = MIN_DAYS
    backend: str = DEFAULT_BACKEND
    chains: int = SamplerConfig.chains
    tune: int | None = None
    draws: int = SamplerConfig.draws
    target_accept: float = SamplerConfig.target_accept
    max_treedepth: int = SamplerConfig.max_treedepth
    extend_budget: float = SamplerConfig.extend_budget_s
    seed: int = SamplerConfig.seed
    pooling: Pooling = "partial"
    parameterization: Parameterization = "auto"
    clustering: str = "on"
    fdr_level: float = FDR_LEVEL
    ci_prob: float = CI_PROB
    ci_kind: CiKind = CI_KIND
    strict: bool = False
    progress: bool = True

    @property
    def columns(self) -> dict[str, str] | None:
        """``column_map`` as ``load_diary`` takes it (``None`` when there is none)."""
        return dict(self.column_map) or None

    def sampler(self) -> SamplerConfig:
        """The NUTS settings of this configuration."""
        return SamplerConfig(
            backend=self.backend,
            chains=self.chains,
            tune=self.tune,
            draws=self.draws,
            target_accept=self.target_accept,
            max_treedepth=self.max_treedepth,
            extend_budget_s=self.extend_budget,
            seed=self.seed,
            progressbar=self.progress,
        )


#: ``--clustering``: keep the priors file's attack-clustering term, or leave it out.
CLUSTERING_CHOICES = ("on", "off")


@dataclass(frozen=True)
class Key:
    """One key of a configuration file.

    Attributes
    ----------
    name
        The key in the file (and the flag ``--name``).
    field
        The ``FitConfig`` attribute it sets.
    kind
        ``"int"``, ``"float"``, ``"str"``, ``"bool"``, ``"path"`` or ``"map"``.
    choices
        The allowed strings (empty: any).
    """

    name: str
    field: str
    kind: str
    choices: tuple[str, ...] = ()


def _key(name: str, kind: str, choices: tuple[str, ...] = (), field: str = "") -> Key:
    return Key(name, field or name.replace("-", "_"), kind, choices)


#: Every key a configuration file may hold, in the order ``document`` writes them.
KEYS: tuple[Key, ...] = (
    _key("diary", "path"),
    _key("priors", "path"),
    _key("missing", "str", MISSING_POLICIES),
    _key("min-days", "int"),
    _key("backend", "str", BACKENDS),
    _key("chains", "int"),
    _key("tune", "int"),
    _key("draws", "int"),
    _key("target-accept", "float"),
    _key("max-treedepth", "int"),
    _key("extend-budget", "float"),
    _key("seed", "int"),
    _key("pooling", "str", POOLINGS),
    _key("parameterization", "str", PARAMETERIZATIONS),
    _key("clustering", "str", CLUSTERING_CHOICES),
    _key("fdr-level", "float"),
    _key("ci-prob", "float"),
    _key("ci-kind", "str", CI_KINDS),
    _key("strict", "bool"),
    _key("progress", "bool"),
    _key("map", "map", field="column_map"),
)

_EXPECTED = {
    "int": "an integer",
    "float": "a finite number",
    "str": "a string",
    "bool": "true or false",
    "path": "a path (a string)",
    "map": 'a table of FILE_COLUMN = "HBM_COLUMN" strings',
}


def _kind_of(value: Any) -> str:
    """How TOML calls the type of a parsed value."""
    names = ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"))
    for kind, name in (*names, (dict, "a table"), (list, "an array")):
        if isinstance(value, kind):
            return name
    return "a date or time"


def _wrong(shown: str, name: str, expected: str, value: Any) -> ConfigError:
    return ConfigError(
        f"{shown}: key '{name}' must be {expected}, got {value!r} ({_kind_of(value)})"
    )


def _map_value(key: Key, value: Any, shown: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise _wrong(shown, key.name, _EXPECTED["map"], value)
    for column, target in value.items():
        if not isinstance(target, str):
            raise _wrong(
                shown,
                f"{key.name}.{column}",
                "a string (an hbm column name; keys below [map] belong to the table, so put "
                "the other keys above it)",
                target,
            )
    return tuple((column.strip(), target.strip()) for column, target in value.items())


def _value(key: Key, value: Any, shown: str, base: Path) -> Any:
    """``value`` checked against ``key``, as ``FitConfig`` holds it (paths joined to ``base``)."""
    if key.kind == "map":
        return _map_value(key, value, shown)
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if key.kind == "int" and is_number and isinstance(value, int):
        return value
    if key.kind == "float" and is_number and math.isfinite(value):
        return float(value)
    if key.kind == "bool" and isinstance(value, bool):
        return value
    if key.kind in ("str", "path") and isinstance(value, str):
        if key.choices and value not in key.choices:
            raise _wrong(shown, key.name, "one of " + ", ".join(map(repr, key.choices)), value)
        return str(base / value) if key.kind == "path" else value
    expected = _EXPECTED[key.kind]
    if key.choices:
        expected = "one of " + ", ".join(map(repr, key.choices))
    raise _wrong(shown, key.name, expected, value)


def parse_config(doc: Mapping[str, Any], shown: str, base: Path) -> dict[str, Any]:
    """Check a parsed configuration document; return its values by ``FitConfig`` field.

    Parameters
    ----------
    doc
        The parsed TOML document.
    shown
        The file's name in error messages.
    base
        The folder relative paths in the file are relative to.

    Raises
    ------
    ConfigError
        On an unknown key (naming the closest known one) or a value of the wrong type or outside
        its choices; the message names the file, the key and what was expected.
    """
    by_name = {key.name: key for key in KEYS}
    values = {}
    for name, value in doc.items():
        key = by_name.get(name)
        if key is None:
            near = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(
                f"{shown}: unknown key '{name}'{hint}; the keys are {', '.join(by_name)}"
            )
        values[key.field] = _value(key, value, shown, base)
    return values


def read_config(path: str | Path) -> dict[str, Any]:
    """Read and check a configuration file (``parse_config``); values by ``FitConfig`` field."""
    p = Path(path)
    return parse_config(io.read_toml(p), str(p), p.parent)


def resolve(*layers: Mapping[str, Any]) -> FitConfig:
    """``FitConfig``'s defaults overridden by each layer of values (by field) in turn."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return replace(FitConfig(), **merged)


def document(config: FitConfig) -> dict[str, Any]:
    """The TOML document of a resolved configuration, as a run folder records it.

    Every key in ``KEYS`` order; paths absolute; ``tune`` resolved to the backend's length when
    it was left to the backend; ``priors`` left out when it is the shipped file, ``map`` when
    there is none.
    """
    doc: dict[str, Any] = {}
    for key in KEYS:
        value = getattr(config, key.field)
        if key.kind in ("path", "map") and not value:
            continue
        if key.kind == "path":
            value = str(Path(value).absolute())
        elif key.kind == "map":
            value = dict(value)
        elif key.field == "tune":
            value = config.sampler().tune_steps
        doc[key.name] = value
    return doc
