"""Priors documents the evaluation tests share."""

from __future__ import annotations

from typing import Any

from ..conftest import small_priors_doc


def clustering_priors_doc() -> dict[str, Any]:
    """The small priors (three features) with a clustering block: ``attack_yesterday`` last."""
    doc = small_priors_doc()
    doc["clustering"] = {
        "log_odds_prior": {"mean": 0.7, "sd": 0.5, "between_user_sd": 0.5},
        "source": "test fixture",
    }
    return doc
