"""The backend registry and the provenance attrs, without sampling."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr

from hbm.errors import FitError, RunError
from hbm.inference import backends
from hbm.inference.config import DEFAULT_TUNE, SamplerConfig
from hbm.inference.provenance import (
    SCHEMA,
    FitProvenance,
    read_provenance,
    stored_centering,
    stored_pooling,
    stored_priors_json,
)
from hbm.results import io


def _provenance() -> FitProvenance:
    return FitProvenance(
        pooling="partial",
        parameterization="auto",
        centring_rule="rule",
        centring_summary={"weights_centred": 0.5},
        pilot_quantile=0.01,
        pilot_max_treedepth=10,
        pilot_users=["u1", "u2"],
        pilot_tau_quantile={"x": 0.25},
        nuts_sampler="nutpie",
        jax_platform="not used",
        numpyro_chain_method="not used",
        sampled_likelihood="fused",
        exposure_layout="blocked",
        exposure_storage="int16 codes x scale per feature",
        exposure_scale={"x": 0.001},
        exposure_max_rounding=1e-4,
        fused_arithmetic="float32 per row, float64 sums",
        seed=5,
        sampler_config={"backend": "nutpie", "chains": 2},
        max_treedepth=8,
        priors_json='{"variables": []}',
        priors_sha256="abc",
        priors_path="p.json",
        data_sha256="def",
        n_obs=12,
        centering={"x": 0.5},
        versions={"pymc": "5"},
        diagnostics={"reliable": True, "reasons": []},
        reliable=True,
        timings={"total_s": 1.5},
        leapfrog_steps={"pilot": 3, "warmup": 4, "draws": 5},
    )


def test_attrs_keep_their_names_and_encodings():
    attrs = _provenance().to_attrs()
    assert next(iter(attrs)) == "hbm_schema" and attrs["hbm_schema"] == SCHEMA == (
        "hbm.inference.fitting/1"
    )
    assert attrs["reliable"] == 1 and attrs["seed"] == 5 and attrs["n_obs"] == 12
    assert attrs["pilot_users"] == '["u1", "u2"]'
    assert attrs["centering"] == '{"x": 0.5}'
    assert attrs["leapfrog_steps"] == json.dumps({"pilot": 3, "warmup": 4, "draws": 5})
    assert json.loads(str(attrs["sampler_config"]))["chains"] == 2


def test_provenance_survives_a_saved_fit(tmp_path):
    prov = _provenance()
    post = xr.Dataset({"mu": (("chain", "draw"), np.zeros((1, 2)))})
    tree = xr.DataTree.from_dict({"posterior": post})
    tree.attrs.update(prov.to_attrs())
    loaded = io.load_fit(io.save_fit(tree, tmp_path / "fit.nc"))
    assert read_provenance(loaded.attrs) == prov
    assert stored_centering(loaded.attrs) == {"x": 0.5}
    assert stored_priors_json(loaded.attrs) == prov.priors_json
    assert stored_pooling(loaded.attrs) == "partial"


def test_a_fit_of_another_schema_is_a_run_error():
    attrs = _provenance().to_attrs()
    attrs["hbm_schema"] = "hbm.fit/0"
    for read in (read_provenance, stored_priors_json, stored_centering, stored_pooling):
        with pytest.raises(RunError, match=r"schema is 'hbm\.fit/0'; this version of hbm reads"):
            read(attrs)
    del attrs["hbm_schema"]
    with pytest.raises(RunError, match="hold no hbm_schema"):
        read_provenance(attrs)
    # a partial tree with just the attr asked for still reads
    assert stored_pooling({}) == "partial"
    attrs = _provenance().to_attrs()
    del attrs["timings"]
    with pytest.raises(RunError, match=r"lack \['timings'\]"):
        read_provenance(attrs)


def test_every_backend_is_one_registry_entry():
    assert backends.BACKENDS == ("nutpie", "pymc", "numpyro")
    assert DEFAULT_TUNE == {"nutpie": 600, "pymc": 1000, "numpyro": 1000}
    assert {n: b.layout for n, b in backends.REGISTRY.items()} == {
        "nutpie": "blocked",
        "pymc": "blocked",
        "numpyro": "feature",
    }
    assert SamplerConfig(backend="pymc").tune == 1000 and SamplerConfig().tune == 600
    cfg = SamplerConfig(backend="pymc", chains=2, cores=1, target_accept=0.85, max_treedepth=7)
    assert backends.get_backend("pymc").pm_sample_kwargs(cfg, 2) == {
        "nuts_sampler": "pymc",
        "nuts": {"max_treedepth": 7, "target_accept": 0.85},
        "cores": 1,
    }


def test_an_unknown_backend_is_one_fit_error_listing_the_names():
    expected = "backend 'stan' is unknown; expected one of ('nutpie', 'pymc', 'numpyro')"
    with pytest.raises(FitError) as info:
        backends.get_backend("stan")
    assert str(info.value) == f"invalid sampler settings: {expected}"
    with pytest.raises(FitError) as info:
        SamplerConfig(backend="stan").check()
    assert str(info.value) == f"invalid sampler settings: {expected}"


def test_cpu_devices_flag_is_set_once_and_an_explicit_one_is_kept(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--other")
    backends.expose_cpu_devices()
    count = f"--xla_force_host_platform_device_count={backends.XLA_HOST_DEVICES} "
    assert os.environ["XLA_FLAGS"] == f"{count}--other"
    backends.expose_cpu_devices()
    assert os.environ["XLA_FLAGS"] == f"{count}--other"
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3")
    backends.expose_cpu_devices()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=3"
