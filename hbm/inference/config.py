"""NUTS settings of a fit (``SamplerConfig``), each backend's default warm-up, draw thinning."""

from __future__ import annotations

from dataclasses import dataclass

from hbm.errors import FitError
from hbm.inference.backends import BACKENDS, DEFAULT_BACKEND, REGISTRY, unknown_backend

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "DEFAULT_TUNE", "SamplerConfig"]

#: Warm-up per chain by backend (``Backend.default_tune``): nutpie adapts its mass matrix from
#: gradients and needs less; PyMC's NUTS and numpyro keep PyMC's 1000.
DEFAULT_TUNE: dict[str, int] = {name: b.default_tune for name, b in REGISTRY.items()}


@dataclass(frozen=True)
class SamplerConfig:
    """NUTS settings; defaults are sized for a 2-core machine (4 chains run two at a time)."""

    backend: str = DEFAULT_BACKEND
    chains: int = 4
    #: Warm-up iterations per chain; ``None`` takes the backend's ``DEFAULT_TUNE``.
    tune: int | None = None
    draws: int = 1000
    target_accept: float = 0.9
    seed: int = 2026
    progressbar: bool = True
    #: Pointwise log-likelihood and posterior predictive are kept for at most this many draws
    #: (evenly thinned): enough for LOO and predictive checks, without a file of hundreds of MB.
    predictive_draws: int = 500
    #: Chains run in parallel on this many cores (None: every core this process may use).
    cores: int | None = None
    #: Longest trajectory of the main fit is ``2**max_treedepth - 1`` leapfrog steps (Stan and
    #: PyMC: 10; the pilot keeps ``PILOT_MAX_TREEDEPTH``). Adapted draws stay well below depth
    #: 8; what a deeper limit allowed was early warm-up, where the step size collapses after
    #: the first divergent steps and trajectories run to the limit for a dozen iterations
    #: (BENCHMARKS.md). ``Diagnostics.max_treedepth_hits`` counts draws that hit it.
    max_treedepth: int = 8
    #: When the gate fails, sample once more with twice the warm-up and draws (the next seed,
    #: target acceptance 0.95) if three times the first sampling's seconds fit in this budget
    #: (twice the iterations, about 1.5 times the steps each); 0 never does
    #: (``hbm.inference.fitting.fit``; run.json's ``extension`` records it).
    extend_budget_s: float = 300.0
    #: Keep ``a`` and ``w`` in float32 without the raw variables behind them
    #: (``hbm.inference.fitting.compact_posterior``); False keeps the posterior as sampled.
    compact: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tune", self.tune_steps)

    @property
    def tune_steps(self) -> int:
        """``tune`` resolved to a number (the backend's ``DEFAULT_TUNE`` when ``None``)."""
        return DEFAULT_TUNE.get(self.backend, 1000) if self.tune is None else int(self.tune)

    def check(self) -> None:
        """Raise one ``FitError`` naming every setting out of range (and an unknown backend)."""
        problems = []
        if self.backend not in BACKENDS:
            problems.append(unknown_backend(self.backend))
        if self.chains < 1:
            problems.append(f"chains must be >= 1, got {self.chains}")
        if self.draws < 1 or self.tune_steps < 0:
            problems.append(f"draws must be >= 1 and tune >= 0, got {self.draws}, {self.tune}")
        if not 1 <= self.max_treedepth <= 15:
            problems.append(f"max_treedepth must be in [1, 15], got {self.max_treedepth}")
        if not self.extend_budget_s >= 0:
            problems.append(f"extend_budget_s must be >= 0 seconds, got {self.extend_budget_s}")
        if not 0.5 <= self.target_accept < 1.0:
            problems.append(f"target_accept must be in [0.5, 1), got {self.target_accept}")
        if problems:
            raise FitError("invalid sampler settings: " + "; ".join(problems))


def thinning_step(n_draws: int, max_draws: int) -> int:
    """Step that keeps at most ``max_draws`` of ``n_draws`` draws, evenly spaced."""
    return max(1, -(-n_draws // max_draws))
