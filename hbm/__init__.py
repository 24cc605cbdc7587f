"""hbm: which migraine triggers matter for this person, and how sure are we?

The package is laid out by stage, in the order data flows: ``hbm.data`` (priors, diaries,
exposures, simulation) -> ``hbm.model`` -> ``hbm.inference`` (fitting, the gate) ->
``hbm.results`` (tables, predictions, report, run folders) -> ``hbm.evaluation`` -> ``hbm.app``.

The public functions are loaded on first use, so ``import hbm`` stays light (no PyMC, numba or
JAX until a fit or prediction needs them): ``hbm.load_priors``, ``hbm.load_diary``,
``hbm.exposures``, ``hbm.fit``, ``hbm.build_exports``, ``hbm.predict``, ``hbm.simulate``,
``hbm.load_fit`` (a saved fit with its log-likelihood and predictive draws, for ArviZ).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

from hbm.errors import DiaryError, FitError, HBMError, PriorsError, RunError

try:
    __version__ = _version("hbm")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: public name -> the module that defines it
_PUBLIC = {
    "Priors": "hbm.data.priors",
    "load_priors": "hbm.data.priors",
    "Diary": "hbm.data.diary",
    "load_diary": "hbm.data.diary",
    "split_by_time": "hbm.data.diary",
    "Design": "hbm.data.exposures",
    "exposures": "hbm.data.exposures",
    "SimulationConfig": "hbm.model.simulation",
    "simulate": "hbm.model.simulation",
    "build_model": "hbm.model.build",
    "choose_centring": "hbm.model.build",
    "FitResult": "hbm.inference.fitting",
    "SamplerConfig": "hbm.inference.fitting",
    "fit": "hbm.inference.fitting",
    "diagnose": "hbm.inference.diagnostics",
    "build_exports": "hbm.results.tables",
    "predict": "hbm.results.prediction",
    "load_fit": "hbm.app.run_workflows",
}

__all__ = [
    "Design",
    "Diary",
    "DiaryError",
    "FitError",
    "FitResult",
    "HBMError",
    "Priors",
    "PriorsError",
    "RunError",
    "SamplerConfig",
    "SimulationConfig",
    "build_exports",
    "build_model",
    "choose_centring",
    "diagnose",
    "exposures",
    "fit",
    "load_diary",
    "load_fit",
    "load_priors",
    "predict",
    "simulate",
    "split_by_time",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'hbm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])


if TYPE_CHECKING:
    from hbm.app.run_workflows import load_fit
    from hbm.data.diary import Diary, load_diary, split_by_time
    from hbm.data.exposures import Design, exposures
    from hbm.data.priors import Priors, load_priors
    from hbm.inference.diagnostics import diagnose
    from hbm.inference.fitting import FitResult, SamplerConfig, fit
    from hbm.model.build import build_model, choose_centring
    from hbm.model.simulation import SimulationConfig, simulate
    from hbm.results.prediction import predict
    from hbm.results.tables import build_exports
