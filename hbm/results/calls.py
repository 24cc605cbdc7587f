"""Trigger and protector calls with a controlled false-discovery rate, and the class of each cell.

The rule (Müller, Parmigiani & Rice 2006; Newton et al. 2004). For every (user, feature) cell the
posterior gives ``p_up = P(w > ROPE)`` and ``p_down = P(w < -ROPE)``. A cell's candidate call is
the likelier direction, with probability ``p_call = max(p_up, p_down)``; calling it is a false
discovery with posterior probability ``1 - p_call`` (the true weight lies inside the ROPE or on
the other side). Candidates are ranked by ``p_call`` and the largest set of the best ranked is
called whose mean ``1 - p_call``, the posterior expected false-discovery proportion, is at most
``level`` (default ``hbm.defaults.FDR_LEVEL``, 2%: why there). At a level ``L`` every cell with
``p_call >= 1 - L`` is called (each adds at most ``L``); at 5% that includes every call of the
90% equal-tailed interval rule (``hbm.results.tables.classify``), at 2% the cells the interval
rule calls with ``p_call`` below 0.98 may be left out, and cells it does not call may be called.

Which cells may be called:

* the clustering term (``role == "clustering"``) never: it is not a trigger (class ``clustering``);
* a feature flagged ``premonitory_confound`` is never called: fatigue, neck pain or light that
  rise before an attack make a same-day or previous-day association whether or not they cause
  anything, and the attack process around them (symptoms before, recovery after) bends the
  association both ways (on a simulated cohort a premonitory feature with no effect was called a
  protector at P = 0.95). Where its ``p_up`` reaches the run's threshold its class is
  ``possible premonitory symptom``.

Cells not called are ``no association`` when their interval lies inside the ROPE (as in the
interval rule), else ``uncertain``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hbm.defaults import FDR_LEVEL

TRIGGER = "trigger"
PROTECTOR = "protector"
PREMONITORY = "possible premonitory symptom"
NO_ASSOCIATION = "no association"
UNCERTAIN = "uncertain"
CLUSTERING = "clustering"
CLASSES = (TRIGGER, PROTECTOR, PREMONITORY, NO_ASSOCIATION, UNCERTAIN, CLUSTERING)
RULE = (
    "call the cells with the highest posterior probability of an effect beyond the ROPE in "
    "their likelier direction while the mean probability of a false call stays <= the level; "
    "premonitory-flagged features and the clustering term are never called"
)


@dataclass(frozen=True)
class Calls:
    """The calls of a run: direction per cell (+1 trigger, -1 protector, 0 none) and summary."""

    direction: np.ndarray
    p_call: np.ndarray
    level: float
    threshold: float  # the smallest p_call called (1 - level when nothing is called)
    expected_fdr: float  # mean 1 - p_call over the calls (0 when nothing is called)

    @property
    def n_calls(self) -> int:
        return int(np.count_nonzero(self.direction))

    def summary(self) -> dict[str, object]:
        return {
            "rule": RULE,
            "fdr_level": self.level,
            "threshold": self.threshold,
            "n_calls": self.n_calls,
            "n_triggers": int((self.direction > 0).sum()),
            "n_protectors": int((self.direction < 0).sum()),
            "expected_fdr": self.expected_fdr,
        }


def fdr_calls(
    p_up: np.ndarray,
    p_down: np.ndarray,
    may_call: np.ndarray,
    level: float = FDR_LEVEL,
) -> Calls:
    """Calls that keep the posterior expected false-discovery proportion <= ``level``.

    Parameters
    ----------
    p_up, p_down
        ``P(w > ROPE)`` and ``P(w < -ROPE)`` per cell (any shape, flattened alike).
    may_call
        Which cells may be called at all (in either direction).
    level
        The level of the expected false-discovery proportion, in (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"the FDR level must be in (0, 1), got {level}")
    p_up, p_down = np.asarray(p_up, dtype=float), np.asarray(p_down, dtype=float)
    may = np.asarray(may_call, dtype=bool)
    up = may & (p_up >= p_down)
    down = may & ~up & (p_down > 0)
    p_call = np.where(up, p_up, np.where(down, p_down, 0.0))
    candidate = (up | down).reshape(-1)
    flat = p_call.reshape(-1)
    order = np.argsort(-flat[candidate], kind="stable")
    ranked = flat[candidate][order]
    mean_false = np.cumsum(1.0 - ranked) / np.arange(1, ranked.size + 1)
    n = int(np.count_nonzero(mean_false <= level))
    chosen = np.zeros(flat.size, dtype=bool)
    threshold = 1.0 - level
    if n:
        threshold = float(ranked[n - 1])
        # cells tied with the last one called are called together or not at all
        chosen = candidate & (flat >= threshold)
        if np.mean(1.0 - flat[chosen]) > level:
            chosen = candidate & (flat > threshold)
            threshold = float(flat[chosen].min()) if chosen.any() else 1.0 - level
    sign = np.where(up, 1, np.where(down, -1, 0)).reshape(-1)
    direction = np.where(chosen, sign, 0).reshape(p_up.shape)
    expected = float(np.mean(1.0 - flat[chosen])) if chosen.any() else 0.0
    return Calls(direction, p_call, level, threshold, expected)


def call_classes(
    calls: Calls,
    p_up: np.ndarray,
    interval_class: np.ndarray,
    role: np.ndarray,
    premonitory: np.ndarray,
) -> np.ndarray:
    """The class of each cell under the calls (module doc)."""
    out = np.where(np.asarray(interval_class) == NO_ASSOCIATION, NO_ASSOCIATION, UNCERTAIN)
    out = out.astype(object)
    out[(np.asarray(premonitory, dtype=bool)) & (np.asarray(p_up) >= calls.threshold)] = PREMONITORY
    out[calls.direction > 0] = TRIGGER
    out[calls.direction < 0] = PROTECTOR
    out[np.asarray(role) == "clustering"] = CLUSTERING
    return out
