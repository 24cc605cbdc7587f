"""The gate on fits whose draws cannot define a diagnostic (issue 22, case 6): one chain has no
R-hat, one draw has no ESS or E-BFMI. Each is NaN, ``not_available`` says why in words, and the
fit fails the gate with that reason. Reasons are written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from hbm.inference.diagnostics import diagnose, gate_reasons, not_available

ONE_CHAIN = (
    "R-hat not available: it needs at least 2 chains and this fit has 1, so convergence cannot "
    "be checked"
)


def _tree(chains: int, draws: int, seed: int = 0) -> xr.DataTree:
    rng = np.random.default_rng(seed)
    coords = {"chain": range(chains), "draw": range(draws)}
    post = xr.Dataset(
        {
            "mu": (("chain", "draw", "feature"), rng.standard_normal((chains, draws, 2))),
            "a0": (("chain", "draw"), rng.standard_normal((chains, draws))),
        },
        coords={**coords, "feature": ["x", "y"]},
    )
    stats = xr.Dataset(
        {
            "energy": (("chain", "draw"), rng.standard_normal((chains, draws))),
            "diverging": (("chain", "draw"), np.zeros((chains, draws), bool)),
        },
        coords=coords,
    )
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def test_one_chain_has_no_r_hat_and_fails_with_that_reason():
    # 4000 independent draws: ESS and E-BFMI pass, only R-hat is missing
    d = diagnose(_tree(chains=1, draws=4000))
    assert d.reliable is False
    assert d.reasons == (ONE_CHAIN,)
    assert math.isnan(d.max_rhat)
    assert all(math.isnan(v["max_rhat"]) for v in d.per_variable.values())
    assert d.not_available == {
        "max_rhat": "it needs at least 2 chains and this fit has 1, so convergence cannot be "
        "checked"
    }
    assert d.min_ess_bulk > 400 and len(d.ebfmi) == 1


def test_one_draw_has_no_ess_and_no_e_bfmi():
    d = diagnose(_tree(chains=2, draws=1))
    undefined = "undefined for a0, mu (too few draws, or draws that never change)"
    assert d.reliable is False
    assert d.reasons == (
        f"R-hat not available: {undefined}",
        f"bulk ESS not available: {undefined}",
        f"tail ESS not available: {undefined}",
        "E-BFMI not available: undefined on chain(s) [0, 1] (too few draws)",
    )
    assert set(d.not_available) == {"max_rhat", "min_ess_bulk", "min_ess_tail", "ebfmi"}
    assert all(math.isnan(e) for e in d.ebfmi)


def test_two_chains_of_many_draws_have_everything():
    assert diagnose(_tree(chains=2, draws=2000)).not_available == {}


def _per_var(rhat: float = 1.0, bulk: float = 1000.0, tail: float = 1000.0) -> dict:
    return {
        "a0": {"max_rhat": 1.0, "min_ess_bulk": 2000.0, "min_ess_tail": 2000.0},
        "tau": {"max_rhat": rhat, "min_ess_bulk": bulk, "min_ess_tail": tail},
    }


NAN = float("nan")


@pytest.mark.parametrize(
    ("per_var", "ebfmi", "chains", "expected"),
    [
        (_per_var(), (1.0, 1.0), 2, {}),
        (
            _per_var(),
            (1.0,),
            1,
            {
                "max_rhat": "it needs at least 2 chains and this fit has 1, so convergence cannot "
                "be checked"
            },
        ),
        (
            _per_var(rhat=NAN),
            (1.0, 1.0),
            2,
            {"max_rhat": "undefined for tau (too few draws, or draws that never change)"},
        ),
        (
            _per_var(bulk=NAN),
            (1.0, 1.0),
            4,
            {"min_ess_bulk": "undefined for tau (too few draws, or draws that never change)"},
        ),
        (
            _per_var(tail=NAN),
            (1.0, 1.0),
            4,
            {"min_ess_tail": "undefined for tau (too few draws, or draws that never change)"},
        ),
        (_per_var(), (1.0, NAN, NAN), 3, {"ebfmi": "undefined on chain(s) [1, 2] (too few draws)"}),
    ],
)
def test_not_available_names_each_undefined_diagnostic(per_var, ebfmi, chains, expected):
    assert not_available(per_var, ebfmi, chains) == expected


def test_an_unavailable_diagnostic_fails_the_gate_with_its_reason():
    why = {"max_rhat": "r", "min_ess_bulk": "b", "min_ess_tail": "t", "ebfmi": "e"}
    # the values themselves would pass: the reason, not the number, decides
    assert gate_reasons(_per_var(), 0, (1.0,), unavailable=why) == [
        "R-hat not available: r",
        "bulk ESS not available: b",
        "tail ESS not available: t",
        "E-BFMI not available: e",
    ]
    assert gate_reasons(_per_var(), 0, (1.0,), unavailable={}) == []
    assert gate_reasons(_per_var(), 2, (NAN,), unavailable={"ebfmi": "e"}) == [
        "2 divergent transitions (allowed 0)",
        "E-BFMI not available: e",
    ]
