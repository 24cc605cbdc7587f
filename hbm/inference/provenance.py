"""What a fit records about how it was made, written to and read from its DataTree's attrs.

``FitProvenance`` is the one place that knows the attrs' names and encodings: netCDF attrs hold
strings and numbers, so structured values are stored as JSON text. Every fit records the schema
version ``SCHEMA`` (attr ``hbm_schema``); ``read_provenance`` refuses a fit without it or with
another one.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from hbm.data.exposures import Design
from hbm.errors import RunError

#: Schema version of the attrs written by ``FitProvenance.to_attrs``.
SCHEMA = "hbm.inference.fitting/1"

#: Fields stored as JSON text.
_JSON_FIELDS = frozenset(
    {
        "centring_summary",
        "pilot_users",
        "pilot_tau_quantile",
        "exposure_scale",
        "sampler_config",
        "centering",
        "versions",
        "diagnostics",
        "timings",
        "leapfrog_steps",
        "last_days",
        "extension",
    }
)
_INT_FIELDS = frozenset({"pilot_max_treedepth", "seed", "n_obs", "max_treedepth"})
_FLOAT_FIELDS = frozenset({"pilot_quantile", "exposure_max_rounding"})


@dataclass(frozen=True)
class FitProvenance:
    """A fit's provenance: model form, pilot, sampler, exposures, inputs, versions and gate."""

    hbm_schema: str = field(default=SCHEMA, kw_only=True)
    pooling: str
    parameterization: str
    centring_rule: str
    centring_summary: dict[str, float]
    pilot_quantile: float
    pilot_max_treedepth: int  # 0: no pilot
    pilot_users: list[str] | None
    pilot_tau_quantile: dict[str, float] | None
    nuts_sampler: str
    jax_platform: str
    numpyro_chain_method: str
    sampled_likelihood: str
    exposure_layout: str
    exposure_storage: str
    exposure_scale: dict[str, float]
    exposure_max_rounding: float
    fused_arithmetic: str
    seed: int
    sampler_config: dict[str, Any]
    #: The main fit's maximum tree depth (``hbm.inference.diagnostics.diagnose`` reads it).
    max_treedepth: int
    priors_json: str
    priors_sha256: str
    priors_path: str
    data_sha256: str
    n_obs: int
    centering: dict[str, float]
    versions: dict[str, str]
    diagnostics: dict[str, Any]
    reliable: bool
    timings: dict[str, float]
    #: Gradient evaluations by phase: ``pilot``, ``warmup``, ``draws`` (-1: not reported).
    leapfrog_steps: dict[str, int]
    #: Per user, the fitted diary's last day and its attack state (``Design.last_days``); a fit
    #: saved before it existed reads as empty.
    last_days: dict[str, list[Any]] = field(default_factory=dict, kw_only=True)
    #: The gate's second try (``hbm.inference.fitting``): why, its settings, time and verdict;
    #: empty when the first sampling was kept (and in a fit saved before it existed).
    extension: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def to_attrs(self) -> dict[str, str | int | float]:
        """The attrs to store on the fit's DataTree."""
        out: dict[str, str | int | float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _JSON_FIELDS:
                out[f.name] = json.dumps(value)
            elif f.name == "reliable":
                out[f.name] = int(value)
            else:
                out[f.name] = value
        return out

    @classmethod
    def from_attrs(cls, attrs: Mapping[Hashable, Any]) -> FitProvenance:
        """Read a fit's attrs back; a ``RunError`` if its schema is missing or another one."""
        check_schema(attrs)
        optional = {"last_days", "extension"}
        missing = [f.name for f in fields(cls) if f.name not in attrs and f.name not in optional]
        if missing:
            raise RunError(f"the fit's attrs lack {missing} (schema {SCHEMA})")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in attrs:
                continue
            raw = attrs[f.name]
            if f.name in _JSON_FIELDS:
                values[f.name] = json.loads(str(raw))
            elif f.name in _INT_FIELDS:
                values[f.name] = int(raw)
            elif f.name in _FLOAT_FIELDS:
                values[f.name] = float(raw)
            elif f.name == "reliable":
                values[f.name] = bool(int(raw))
            else:
                values[f.name] = str(raw)
        return cls(**values)


def read_provenance(attrs: Mapping[Hashable, Any]) -> FitProvenance:
    """``FitProvenance.from_attrs``: a saved fit's provenance (``tree.attrs``)."""
    return FitProvenance.from_attrs(attrs)


def check_schema(attrs: Mapping[Hashable, Any], *, required: bool = True) -> None:
    """A ``RunError`` unless ``attrs`` record this version's ``SCHEMA``.

    With ``required=False`` attrs without ``hbm_schema`` pass (a partial tree that holds only
    the attr being read); another schema never does.
    """
    if "hbm_schema" not in attrs:
        if required:
            raise RunError(
                f"the fit's attrs hold no hbm_schema; expected '{SCHEMA}': "
                "was it saved by hbm? Refit it with this version"
            )
        return
    found = str(attrs["hbm_schema"])
    if found != SCHEMA:
        raise RunError(
            f"the fit's schema is '{found}'; this version of hbm reads '{SCHEMA}': "
            "refit it with this version"
        )


def stored_priors_json(attrs: Mapping[Hashable, Any]) -> str:
    """The priors document a fit was made with."""
    check_schema(attrs, required=False)
    if "priors_json" not in attrs:
        raise RunError("the fit's attrs hold no priors_json; was it saved by hbm?")
    return str(attrs["priors_json"])


def stored_centering(attrs: Mapping[Hashable, Any]) -> dict[str, float]:
    """The exposure means a fit centred its design with, by feature."""
    check_schema(attrs, required=False)
    if "centering" not in attrs:
        raise RunError("the fit's attrs hold no centering; was it saved by hbm?")
    means: dict[str, Any] = json.loads(str(attrs["centering"]))
    return {k: float(v) for k, v in means.items()}


def stored_last_days(attrs: Mapping[Hashable, Any]) -> dict[str, tuple[str, int]]:
    """Per user, the fitted diary's last day and its attack state (empty for older fits)."""
    check_schema(attrs, required=False)
    raw: dict[str, list[Any]] = json.loads(str(attrs.get("last_days", "{}")))
    return {u: (str(d), int(s)) for u, (d, s) in raw.items()}


def stored_pooling(attrs: Mapping[Hashable, Any], default: str = "partial") -> str:
    """The pooling a fit was made with (``default`` when not recorded)."""
    check_schema(attrs, required=False)
    return str(attrs.get("pooling", default))


def package_versions(*extra: str) -> dict[str, str]:
    """Versions of the packages that determine a fit's numbers, and of ``extra`` ones."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    core = ("hbm", "pymc", "pytensor", "arviz", "arviz-stats", "nutpie", "numpy", "numpyro")
    for pkg in (*core, *extra):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def exposure_storage(design: Design, quantized: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """How both forms of the model read the exposures and how far that rounds them.

    Parameters
    ----------
    design
        The fitted design.
    quantized
        ``hbm.model.likelihood.quantize_exposures(design.x)``: 16-bit codes and a scale per
        feature.

    Returns
    -------
    dict
        ``exposure_storage``, ``exposure_scale`` (by feature), ``exposure_max_rounding`` and
        ``fused_arithmetic``, as ``FitProvenance`` takes them.
    """
    codes, scale = quantized
    rounding = float(np.abs(codes * scale - design.x).max()) if design.n_obs else 0.0
    return {
        "exposure_storage": "int16 codes x scale per feature",
        "exposure_scale": dict(zip(design.features, scale.tolist(), strict=True)),
        "exposure_max_rounding": rounding,
        "fused_arithmetic": "float32 per row, float64 sums",
    }
