"""The gate's second try (``hbm.inference.fitting._sample_and_gate``), on scripted draws and
verdicts: when it runs, with what settings, what it records and which draws it keeps."""

from __future__ import annotations

from dataclasses import replace

import pytest
import xarray as xr

import hbm.inference.fitting as fitting
from hbm.inference.config import SamplerConfig
from hbm.inference.diagnostics import Diagnostics


def _verdict(reasons: tuple[str, ...] = (), not_available: dict[str, str] | None = None):
    return Diagnostics(
        reliable=not reasons,
        reasons=reasons,
        max_rhat=1.02 if reasons else 1.001,
        min_ess_bulk=250.0 if reasons else 900.0,
        min_ess_tail=300.0 if reasons else 800.0,
        divergences=0,
        ebfmi=(1.0,),
        not_available=not_available or {},
    )


@pytest.fixture()
def scripted(monkeypatch):
    """``draw`` returns a tree naming its settings and takes ``seconds``; ``diagnose`` gives
    the next verdict of ``verdicts``."""
    calls: list[SamplerConfig] = []
    script = {"seconds": [10.0, 25.0], "verdicts": []}

    def draw(_model, cfg, _compiled=None):
        calls.append(cfg)
        tree = xr.DataTree.from_dict({"posterior": xr.Dataset(attrs={"draws": cfg.draws})})
        steps = {"warmup": cfg.tune_steps, "draws": cfg.draws}
        return tree, {"sampling_s": script["seconds"][len(calls) - 1]}, steps

    monkeypatch.setattr(fitting, "draw", draw)
    monkeypatch.setattr(fitting, "diagnose", lambda _t, _g: script["verdicts"].pop(0))
    return calls, script


def _run(cfg: SamplerConfig):
    phases: list[str] = []
    timings: dict[str, float] = {}
    out = fitting._sample_and_gate(None, cfg, None, phases.append, timings)
    return (*out, phases, timings)


def test_a_failed_gate_samples_again_with_twice_the_warm_up_and_draws(scripted):
    calls, script = scripted
    failed = ("max R-hat 1.020 > 1.01 (worst: tau)",)
    script["verdicts"] = [_verdict(failed), _verdict()]
    cfg = SamplerConfig(tune=300, draws=1000, seed=7, extend_budget_s=30.0)
    tree, diagnostics, steps, extension, phases, timings = _run(cfg)
    assert calls == [cfg, replace(cfg, tune=600, draws=2000, seed=8, target_accept=0.95)]
    assert phases == ["sample", "diagnostics", "extend", "sample", "diagnostics"]
    assert tree["posterior"].attrs["draws"] == 2000 and steps == {"warmup": 600, "draws": 2000}
    assert diagnostics.reliable
    assert extension == {
        "why": list(failed),
        "first": {"max_rhat": 1.02, "min_ess_bulk": 250.0, "min_ess_tail": 300.0,
                  "sampling_s": 10.0},
        "tune": 600,
        "draws": 2000,
        "seed": 8,
        "target_accept": 0.95,
        "budget_s": 30.0,
        "sampling_s": 25.0,
        "reliable": True,
    }  # fmt: skip
    assert timings["sampling_s"] == 10.0 and timings["extension_sampling_s"] == 25.0
    assert {"diagnostics_s", "extension_diagnostics_s"} <= set(timings)


def test_the_second_try_is_kept_and_said_when_it_fails_too(scripted):
    calls, script = scripted
    script["verdicts"] = [_verdict(("min tail ESS 300 < 400 (worst: tau)",)), _verdict(("x",))]
    _, diagnostics, _, extension, *_ = _run(SamplerConfig(extend_budget_s=300.0))
    assert len(calls) == 2 and extension["reliable"] is False
    assert diagnostics.reasons == ("x",)


@pytest.mark.parametrize(
    ("budget", "runs"),
    [(0.0, 1), (29.99, 1), (30.0, 2)],  # three times the first sampling's 10 s must fit
)
def test_the_second_try_runs_only_within_its_budget(scripted, budget, runs):
    calls, script = scripted
    script["verdicts"] = [_verdict(("min bulk ESS 250 < 400 (worst: tau)",)), _verdict()]
    *_, extension, _, timings = _run(SamplerConfig(extend_budget_s=budget))
    assert len(calls) == runs and bool(extension) == (runs == 2)
    assert ("extension_sampling_s" in timings) == (runs == 2)


def test_a_passed_gate_or_an_undefined_diagnostic_is_not_sampled_again(scripted):
    calls, script = scripted
    script["verdicts"] = [_verdict()]
    assert _run(SamplerConfig())[3] == {} and len(calls) == 1
    one_chain = {"max_rhat": "it needs at least 2 chains"}
    script["verdicts"] = [_verdict(("R-hat not available: ...",), one_chain)]
    assert _run(SamplerConfig(chains=1))[3] == {} and len(calls) == 2


def test_the_budget_must_not_be_negative():
    from hbm.errors import FitError

    with pytest.raises(FitError, match="extend_budget_s must be >= 0 seconds, got -1"):
        SamplerConfig(extend_budget_s=-1).check()
    SamplerConfig(extend_budget_s=0).check()


def test_the_second_try_keeps_a_higher_target_acceptance(scripted):
    calls, script = scripted
    script["verdicts"] = [_verdict(("min tail ESS 300 < 400 (worst: tau)",)), _verdict()]
    _run(SamplerConfig(target_accept=0.97))
    assert calls[1].target_accept == 0.97
