"""hbm: which migraine triggers matter for this person, and how sure are we?

The public functions follow the data flow: priors -> diary -> exposures -> model -> fit ->
posterior tables -> predictions.
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("hbm")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

from hbm.diagnostics import diagnose
from hbm.diary import Diary, load_diary, split_by_time
from hbm.errors import DiaryError, FitError, HBMError, PriorsError, RunError
from hbm.features import Design, exposures
from hbm.fit import FitResult, SamplerConfig, fit
from hbm.model import build_model, choose_centring
from hbm.posterior import build_exports
from hbm.predict import predict
from hbm.priors import Priors, load_priors
from hbm.simulate import SimulationConfig, simulate

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
    "load_priors",
    "predict",
    "simulate",
    "split_by_time",
]
