"""The reliability gate, on synthetic draws and on exact numbers at each threshold.

Expected values are written by hand (the thresholds R-hat 1.01, ESS 400, 0 divergences, E-BFMI
0.3) or come from ArviZ called here directly, never from ``hbm.inference.diagnostics`` itself.
"""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import xarray as xr

from hbm.inference.diagnostics import (
    GATE,
    Gate,
    diagnose,
    gate_reasons,
    max_treedepth_hits,
    rank_p_values,
)

C, D = 4, 1000


def _tree(
    mu: np.ndarray,
    energy: np.ndarray | None = None,
    diverging: np.ndarray | None = None,
    seed: int = 1,
) -> xr.DataTree:
    rng = np.random.default_rng(seed)
    coords = {"chain": range(C), "draw": range(D)}
    post = xr.Dataset(
        {
            "mu": (("chain", "draw", "feature"), mu),
            # a second gated variable that always converges: the worst one must be named
            "a0": (("chain", "draw"), rng.standard_normal((C, D))),
        },
        coords={**coords, "feature": ["x", "y"]},
    )
    stats = xr.Dataset(
        {
            "energy": (
                ("chain", "draw"),
                rng.standard_normal((C, D)) if energy is None else energy,
            ),
            "diverging": (
                ("chain", "draw"),
                np.zeros((C, D), bool) if diverging is None else diverging,
            ),
        },
        coords=coords,
    )
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


@pytest.fixture()
def iid() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((C, D, 2))


def test_default_thresholds_are_the_documented_ones():
    assert (
        Gate(
            max_rhat=1.01,
            min_ess_bulk=400.0,
            min_ess_tail=400.0,
            max_divergences=0,
            min_ebfmi=0.3,
            min_rank_p=0.01,
        )
        == GATE
    )


def test_well_mixed_draws_pass_with_arviz_figures(iid):
    tree = _tree(iid)
    d = diagnose(tree)
    assert d.reliable is True
    assert d.reasons == ()
    rhat = az.rhat(tree, var_names=["mu", "a0"])
    bulk = az.ess(tree, var_names=["mu", "a0"], method="bulk")
    tail = az.ess(tree, var_names=["mu", "a0"], method="tail")
    assert d.max_rhat == pytest.approx(max(float(rhat[v].max()) for v in ("mu", "a0")))
    assert d.min_ess_bulk == pytest.approx(min(float(bulk[v].min()) for v in ("mu", "a0")))
    assert d.min_ess_tail == pytest.approx(min(float(tail[v].min()) for v in ("mu", "a0")))
    assert d.per_variable["mu"]["max_rhat"] == pytest.approx(float(rhat["mu"].max()))
    assert d.per_variable["mu"]["min_ess_bulk"] == pytest.approx(float(bulk["mu"].min()))
    assert d.per_variable["mu"]["min_ess_tail"] == pytest.approx(float(tail["mu"].min()))
    assert d.divergences == 0
    bfmi = az.bfmi(tree)["energy"].values
    assert d.ebfmi == pytest.approx(tuple(bfmi))
    assert d.max_treedepth_hits == -1
    assert d.gate == GATE
    assert d.to_dict()["reliable"] is True


def test_chains_that_disagree_trip_r_hat(iid):
    shifted = iid.copy()
    shifted[3, :, 0] += 0.4  # one chain sits 0.4 SD away
    d = diagnose(_tree(shifted))
    assert d.reliable is False
    assert d.max_rhat > 1.01
    assert d.reasons[0] == f"max R-hat {d.max_rhat:.3f} > 1.01 (worst: mu)"


def test_autocorrelated_draws_trip_bulk_ess(iid):
    rng = np.random.default_rng(5)
    phi, x = 0.9, np.zeros((C, D))
    e = rng.standard_normal((C, D))
    for t in range(1, D):
        x[:, t] = phi * x[:, t - 1] + math.sqrt(1 - phi**2) * e[:, t]
    draws = iid.copy()
    draws[:, :, 1] = x
    d = diagnose(_tree(draws))
    assert d.reliable is False
    assert d.min_ess_bulk < 400
    assert f"min bulk ESS {d.min_ess_bulk:.0f} < 400 (worst: mu)" in d.reasons


def test_tails_visited_in_runs_trip_tail_ess(iid):
    # the 10% of draws outside the 5-95% quantiles come in sorted runs of 50
    rng = np.random.default_rng(3)
    z = rng.standard_normal(C * D)
    lo, hi = np.quantile(z, [0.05, 0.95])
    tail = np.sort(z[(z < lo) | (z > hi)])
    centre = rng.permutation(z[(z >= lo) & (z <= hi)])
    chunks = [tail[i : i + 50] for i in range(0, len(tail), 50)]
    per = len(centre) // len(chunks)
    parts = []
    for j, k in enumerate(rng.permutation(len(chunks))):
        parts += [centre[j * per : (j + 1) * per], chunks[k]]
    parts.append(centre[len(chunks) * per :])
    draws = iid.copy()
    draws[:, :, 0] = np.concatenate(parts).reshape(C, D)
    d = diagnose(_tree(draws))
    assert d.reliable is False
    assert d.min_ess_tail < 400
    assert f"min tail ESS {d.min_ess_tail:.0f} < 400 (worst: mu)" in d.reasons


def test_one_divergence_fails_the_gate(iid):
    div = np.zeros((C, D), bool)
    div[2, 17] = True
    d = diagnose(_tree(iid, diverging=div))
    assert d.reliable is False
    assert d.divergences == 1
    assert d.reasons == ("1 divergent transitions (allowed 0)",)


def test_a_sticky_energy_chain_fails_e_bfmi(iid):
    energy = np.random.default_rng(2).standard_normal((C, D))
    energy[1] = np.cumsum(energy[1])  # a random walk: E-BFMI near 0 on chain 1 only
    d = diagnose(_tree(iid, energy=energy))
    assert d.reliable is False
    assert d.ebfmi[1] < 0.3 < min(d.ebfmi[0], d.ebfmi[2], d.ebfmi[3])
    assert d.reasons == (f"E-BFMI {d.ebfmi[1]:.2f} < 0.3 on some chain",)


def _per_var(rhat: float = 1.0, bulk: float = 1000.0, tail: float = 1000.0) -> dict:
    return {
        "a0": {"max_rhat": 1.0, "min_ess_bulk": 2000.0, "min_ess_tail": 2000.0},
        "tau": {"max_rhat": rhat, "min_ess_bulk": bulk, "min_ess_tail": tail},
    }


@pytest.mark.parametrize(
    ("per_var", "divergences", "ebfmi", "expected"),
    [
        (_per_var(), 0, (1.0, 1.0), []),
        # each threshold itself passes
        (_per_var(rhat=1.01, bulk=400.0, tail=400.0), 0, (0.3, 0.3), []),
        (_per_var(rhat=1.0101), 0, (1.0,), ["max R-hat 1.010 > 1.01 (worst: tau)"]),
        (_per_var(rhat=float("nan")), 0, (1.0,), ["max R-hat nan > 1.01 (worst: tau)"]),
        (_per_var(bulk=399.9), 0, (1.0,), ["min bulk ESS 400 < 400 (worst: tau)"]),
        (_per_var(bulk=39.0), 0, (1.0,), ["min bulk ESS 39 < 400 (worst: tau)"]),
        (_per_var(tail=399.4), 0, (1.0,), ["min tail ESS 399 < 400 (worst: tau)"]),
        (_per_var(), 1, (1.0,), ["1 divergent transitions (allowed 0)"]),
        (_per_var(), 0, (0.9, 0.2999), ["E-BFMI 0.30 < 0.3 on some chain"]),
        (_per_var(), 0, (), []),
        (
            _per_var(rhat=1.2, bulk=10.0, tail=20.0),
            3,
            (0.1,),
            [
                "max R-hat 1.200 > 1.01 (worst: tau)",
                "min bulk ESS 10 < 400 (worst: tau)",
                "min tail ESS 20 < 400 (worst: tau)",
                "3 divergent transitions (allowed 0)",
                "E-BFMI 0.10 < 0.3 on some chain",
            ],
        ),
    ],
)
def test_gate_reasons_at_each_threshold(per_var, divergences, ebfmi, expected):
    assert gate_reasons(per_var, divergences, ebfmi) == expected


def test_a_custom_gate_moves_every_threshold():
    strict = Gate(max_rhat=1.001, min_ess_bulk=5000, min_ess_tail=5000, max_divergences=2)
    reasons = gate_reasons(_per_var(rhat=1.005), 2, (0.31,), strict)
    assert reasons == [
        "max R-hat 1.005 > 1.001 (worst: tau)",
        "min bulk ESS 1000 < 5000 (worst: tau)",
        "min tail ESS 1000 < 5000 (worst: tau)",
    ]
    assert gate_reasons(_per_var(), 0, (0.31,), Gate(min_ebfmi=0.32)) == [
        "E-BFMI 0.31 < 0.32 on some chain"
    ]


def test_max_treedepth_hits_counts_flags_or_depths():
    flags = xr.Dataset({"reached_max_treedepth": (("chain", "draw"), [[True, False, True]])})
    assert max_treedepth_hits(flags) == 2
    depths = xr.Dataset({"tree_depth": (("chain", "draw"), [[3, 8, 9, 7]])})
    assert max_treedepth_hits(depths, 8) == 2
    assert max_treedepth_hits(depths) == -1
    assert max_treedepth_hits(xr.Dataset()) == -1


def test_diagnose_applies_the_gate_it_is_given(iid):
    d = diagnose(_tree(iid), Gate(min_ess_bulk=1e9))
    assert d.reliable is False
    assert d.reasons == (f"min bulk ESS {d.min_ess_bulk:.0f} < 1000000000 (worst: mu)",)
    assert d.gate == Gate(min_ess_bulk=1e9)


def test_diagnose_counts_depth_hits_and_reads_backends_without_a_divergence_flag(iid):
    tree = _tree(iid)
    stats = tree["sample_stats"].to_dataset().drop_vars("diverging")
    depth = np.full((C, D), 5)
    depth[0, :7] = 6
    stats["tree_depth"] = (("chain", "draw"), depth)
    tree = xr.DataTree.from_dict(
        {"posterior": tree["posterior"].to_dataset(), "sample_stats": stats}
    )
    tree.attrs["max_treedepth"] = 6
    d = diagnose(tree)
    assert d.divergences == 0
    assert d.max_treedepth_hits == 7
    assert d.reliable is True


def _ar1(seed: int, phi: float) -> np.ndarray:
    """Four chains of a stationary AR(1) with coefficient ``phi``: one target, autocorrelated."""
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((C, D))
    x = np.empty((C, D))
    x[:, 0] = e[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, D):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def _rank_p(values: np.ndarray) -> float:
    """ArviZ's multi-chain rank-ECDF test on every draw, as this test calls it directly."""
    da = xr.DataArray(values, dims=["chain", "draw"])
    ranks = da.azstats.compute_ranks(dim=["chain", "draw"], relative=True)
    return float(ranks.azstats.mchain_uniformity_test(dim=["chain", "draw"])[0])


def test_rank_p_values_label_each_population_cell(iid):
    tree = _tree(iid)
    post = tree["posterior"].to_dataset()
    ess = az.ess(tree, method="bulk")
    p = rank_p_values(post, ess)
    assert sorted(p) == ["a0", "mu[x]", "mu[y]"]
    # well-mixed independent draws: nothing to thin, ArviZ's own p-value on every draw
    step = math.ceil(C * D / float(ess["a0"]))
    assert p["a0"] == pytest.approx(_rank_p(iid_a0 := post["a0"].values[:, ::step]))
    assert iid_a0.shape[1] <= D and min(p.values()) > 0.01 / 3
    assert diagnose(tree).rank_p == p


def test_rank_p_values_thin_autocorrelated_chains_to_their_ess():
    x = _ar1(0, 0.95)
    post = xr.Dataset({"a0": (("chain", "draw"), x)}, coords={"chain": range(C), "draw": range(D)})
    ess = az.ess(xr.DataTree.from_dict({"posterior": post}), method="bulk")
    step = math.ceil(C * D / float(ess["a0"]))
    assert step > 20  # ESS about 90 of 4000 draws
    p = rank_p_values(post, ess)["a0"]
    assert p == pytest.approx(_rank_p(x[:, ::step]))
    # on every draw the same sound chains would be called disagreeing: autocorrelation alone
    assert _rank_p(x) < 1e-6 < 0.01 < p


def test_chains_whose_ranks_disagree_fail_the_gate_by_name(iid):
    shifted = iid.copy()
    shifted[0, :, 1] *= 1.6  # chain 0 spreads wider on mu[y]: same mean, other ranks
    d = diagnose(_tree(shifted))
    assert d.rank_p["mu[y]"] < 0.01 / 3 < min(d.rank_p["mu[x]"], d.rank_p["a0"])
    assert d.reliable is False
    assert d.reasons[-1] == (
        f"chains disagree (rank-ECDF p {d.rank_p['mu[y]']:.1e} < 0.01/3 cells; worst: mu[y])"
    )


def test_rank_p_values_skip_one_chain_and_draws_that_never_change(iid):
    tree = _tree(iid)
    post = tree["posterior"].to_dataset()
    one = post.isel(chain=[0])
    assert rank_p_values(one, az.ess(xr.DataTree.from_dict({"posterior": one}))) == {}
    fixed = post.assign(a0=(("chain", "draw"), np.ones((C, D))))
    ess = az.ess(xr.DataTree.from_dict({"posterior": fixed}), method="bulk")
    assert sorted(rank_p_values(fixed, ess)) == ["mu[x]", "mu[y]"]
    # a fixed cell is skipped, the variable's next cells are still tested
    mu = post["mu"].values.copy()
    mu[..., 0] = 0.5
    first_fixed = post.assign(mu=(("chain", "draw", "feature"), mu))
    ess = az.ess(xr.DataTree.from_dict({"posterior": first_fixed}), method="bulk")
    assert sorted(rank_p_values(first_fixed, ess)) == ["a0", "mu[y]"]


def test_two_chains_are_enough_to_compare(iid):
    post = _tree(iid)["posterior"].to_dataset().isel(chain=[0, 1])
    p = rank_p_values(post, az.ess(xr.DataTree.from_dict({"posterior": post}), method="bulk"))
    assert sorted(p) == ["a0", "mu[x]", "mu[y]"] and all(0 < v <= 1 for v in p.values())


@pytest.mark.parametrize(
    ("rank_p", "expected"),
    [
        ({}, []),
        ({"tau[x]": 0.005, "mu[x]": 0.9}, []),  # at the threshold 0.01 / 2 itself: passes
        (
            {"tau[x]": 0.0049, "mu[x]": 0.9},
            ["chains disagree (rank-ECDF p 4.9e-03 < 0.01/2 cells; worst: tau[x])"],
        ),
        (
            {"tau[x]": 0.004, "mu[x]": 0.001, "a0": 0.5},
            ["chains disagree (rank-ECDF p 1.0e-03 < 0.01/3 cells; worst: mu[x])"],
        ),
        ({"a0": 0.0099}, ["chains disagree (rank-ECDF p 9.9e-03 < 0.01/1 cells; worst: a0)"]),
        ({"a0": 0.01}, []),
    ],
)
def test_gate_reasons_for_the_rank_test_at_its_bonferroni_threshold(rank_p, expected):
    assert gate_reasons(_per_var(), 0, (1.0,), rank_p=rank_p) == expected
    # the gate's own level: a stricter one lets a p-value pass that the default fails
    assert gate_reasons(_per_var(), 0, (1.0,), Gate(min_rank_p=0.001), rank_p={"a0": 0.002}) == []
    assert gate_reasons(_per_var(), 0, (1.0,), rank_p={"a0": 0.002}) != []
