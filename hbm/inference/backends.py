"""The NUTS backends, one object each: ``nutpie``, ``pymc`` (PyMC's own NUTS) and ``numpyro``.

A backend owns everything that differs between samplers: the exposure layout its gradient reads,
its compile step, its sample call and options, the process-wide settings it needs and the attrs
it records. ``get_backend`` looks one up by name; an unknown name is a ``FitError`` that lists
the valid ones.

The backend is always passed explicitly to ``pm.sample`` and recorded, since PyMC silently
switches its default to nutpie when nutpie is installed.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from hbm.errors import FitError
from hbm.interrupts import check, held_signals

if TYPE_CHECKING:  # pymc, xarray and the model load with the first sample, not with this module
    import pymc as pm
    import xarray as xr

    from hbm.inference.config import SamplerConfig
    from hbm.model.likelihood import Layout

#: CPU devices JAX is shown (the value PyMC's JAX sampler sets): numpyro runs chains in parallel
#: only with at least one device per chain; the devices share the machine's cores.
XLA_HOST_DEVICES = 100


def expose_cpu_devices() -> None:
    """Let JAX see ``XLA_HOST_DEVICES`` CPU devices, so numpyro runs its chains in parallel.

    XLA reads the flag once, when JAX first starts a backend, so this must run before then:
    anything that starts JAX before ``pm.sample`` imports ``pymc.sampling.jax`` (which sets the
    same flag) would otherwise leave one device, and numpyro would run its chains one after
    another. An explicit flag in ``XLA_FLAGS`` is left alone.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_force_host_platform_device_count" not in flags:
        # trailing space: PyMC's own rewrite of the flag only matches a value followed by one
        count = f"--xla_force_host_platform_device_count={XLA_HOST_DEVICES} "
        os.environ["XLA_FLAGS"] = f"{count}{flags}"


def available_cores() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def numpyro_chain_method(chains: int) -> str:
    """How numpyro runs ``chains`` chains.

    ``"parallel"`` with a JAX device per chain (the CPU, see ``XLA_HOST_DEVICES``), else
    ``"vectorized"`` (one GPU: the chains share each gradient call instead of queueing).
    """
    expose_cpu_devices()
    import jax

    return "parallel" if jax.local_device_count() >= chains else "vectorized"


def jax_platform() -> str:
    """JAX's default device (``"cpu"``, or the accelerator's kind).

    ``"not started"`` when JAX has not been imported, so that asking never starts it.
    """
    if "jax" not in sys.modules:
        return "not started"
    import jax

    device = jax.devices()[0]
    return "cpu" if device.platform == "cpu" else f"{device.platform}: {device.device_kind}"


@dataclass(frozen=True)
class NutsRun:
    """Length and seed of one NUTS run (the main fit's, or the pilot's)."""

    chains: int
    tune: int
    draws: int
    seed: int
    progressbar: bool


class Backend:
    """A NUTS backend sampled through ``pm.sample`` (``nuts_sampler=name``).

    Subclasses set ``name``, ``default_tune`` and ``layout``, and override what differs.
    """

    name: ClassVar[str]
    #: Warm-up iterations per chain when ``SamplerConfig.tune`` is ``None``.
    default_tune: ClassVar[int] = 1000
    #: How the fused likelihood stores the exposures for this backend's gradient.
    layout: ClassVar[Layout] = "blocked"

    def prepare(self) -> None:
        """Process-wide settings the backend needs before it first samples (idempotent)."""

    def compile(self, model: pm.Model) -> Any:
        """The model compiled for reuse across runs; ``None`` when ``sample`` compiles itself."""
        return None

    def cores(self, cfg: SamplerConfig, chains: int) -> int:
        """Cores the run's ``chains`` chains use: at most one each."""
        # PyMC's default halves the CPU count (it assumes hyperthreads), which on a 2-core
        # machine runs every chain on one core; pass the real count.
        return min(chains, cfg.cores or available_cores())

    def nuts_options(self, cfg: SamplerConfig, chains: int) -> dict[str, Any]:
        """``pm.sample``'s ``nuts`` options: the maximum tree depth under the backend's name."""
        return {"max_treedepth": cfg.max_treedepth}

    def pm_sample_kwargs(self, cfg: SamplerConfig, chains: int) -> dict[str, Any]:
        """The backend's arguments to ``pm.sample`` (sampler, ``nuts`` options, cores).

        ``target_accept`` goes inside ``nuts``, where ``pm.sample`` would move it: a caller that
        hands the same dict to several fits (simuk) would otherwise define it twice.
        """
        nuts = {**self.nuts_options(cfg, chains), "target_accept": cfg.target_accept}
        return {"nuts_sampler": self.name, "nuts": nuts, "cores": self.cores(cfg, chains)}

    def sample(
        self, model: pm.Model, cfg: SamplerConfig, run: NutsRun, compiled: Any = None
    ) -> xr.DataTree:
        """One NUTS run, warm-up statistics kept (``leapfrog_steps`` reads them)."""
        import pymc as pm

        self.prepare()
        out: xr.DataTree = pm.sample(
            model=model,
            draws=run.draws,
            tune=run.tune,
            chains=run.chains,
            random_seed=run.seed,
            progressbar=run.progressbar,
            discard_tuned_samples=False,
            **self.pm_sample_kwargs(cfg, run.chains),
        )
        return out

    def attrs(self, cfg: SamplerConfig) -> dict[str, str]:
        """What the fit records about the backend's platform."""
        return {"jax_platform": "not used", "numpyro_chain_method": "not used"}


class NutpieBackend(Backend):
    """nutpie, called directly so that a model compiled once serves several runs.

    ``pm.sample`` would compile the model again for each run. nutpie adapts its mass matrix from
    gradients and needs a shorter warm-up than PyMC's default. Its own default, 300, left the
    between-user spreads short of the gate on 6 of 10 fresh medium cohorts (R-hat up to 1.015,
    tail ESS down to 251); 600 on 4 of 10, each passed on its second try (BENCHMARKS.md,
    "What a user meets").
    """

    name = "nutpie"
    default_tune = 600

    def compile(self, model: pm.Model) -> Any:
        """nutpie's compiled model (numba), reusable for other values of the model's data.

        It stores the sampled variables only, since compiling the deterministics into nutpie's
        per-draw function is a large share of the compile; ``draw`` adds them afterwards. Its
        callbacks are cached on disk (``hbm.inference.nutpie_cache``).
        """
        from hbm.inference.nutpie_cache import compile_cached

        return compile_cached(model, var_names=[v.name for v in model.free_RVs])

    def sample(
        self, model: pm.Model, cfg: SamplerConfig, run: NutsRun, compiled: Any = None
    ) -> xr.DataTree:
        import nutpie
        from pymc.backends.arviz import patch_nutpie_idata

        compiled = compiled if compiled is not None else self.compile(model)
        t0 = time.perf_counter()
        with held_signals():  # starting the sampler calls back into Python from Rust
            sampler = nutpie.sample(
                compiled,
                draws=run.draws,
                tune=max(run.tune, 1),  # nuts-rs needs one warm-up step at least
                chains=run.chains,
                cores=self.cores(cfg, run.chains),
                seed=run.seed,
                save_warmup=True,
                progress_bar=run.progressbar,
                target_accept=cfg.target_accept,
                maxdepth=cfg.max_treedepth,
                blocking=False,
            )
        try:
            check()  # a signal before the wait, whose exception was lost, stops it here
            dt = sampler.wait()  # checks for signals every few ms (its Rust threads sample)
        except BaseException:
            # nutpie's own blocking call answers KeyboardInterrupt with the draws so far, padded
            # with NaN; a fit stops instead (the signal's exception goes on)
            with held_signals():
                sampler.cancel()
            raise
        patch_nutpie_idata(dt, model, sampling_time=time.perf_counter() - t0)
        return dt


class PymcBackend(Backend):
    """PyMC's own NUTS, a process per chain."""

    name = "pymc"

    def pm_sample_kwargs(self, cfg: SamplerConfig, chains: int) -> dict[str, Any]:
        kwargs = super().pm_sample_kwargs(cfg, chains)
        if kwargs["cores"] > 1 and "jax" in sys.modules:
            # forking after JAX has started its threads (the neural baseline in the same
            # process) can deadlock, so start the chain workers fresh instead
            kwargs["mp_ctx"] = "forkserver"
        return kwargs


class NumpyroBackend(Backend):
    """numpyro (JAX), for GPUs; it reads the exposures as one ``(feature, obs)`` matrix."""

    name = "numpyro"
    layout = "feature"

    def prepare(self) -> None:
        expose_cpu_devices()
        from hbm.model.likelihood import register_jax

        register_jax()

    def nuts_options(self, cfg: SamplerConfig, chains: int) -> dict[str, Any]:
        return {"chain_method": numpyro_chain_method(chains), "max_tree_depth": cfg.max_treedepth}

    def attrs(self, cfg: SamplerConfig) -> dict[str, str]:
        return {
            "jax_platform": jax_platform(),
            "numpyro_chain_method": numpyro_chain_method(cfg.chains),
        }


#: Every backend by name, the default first.
REGISTRY: dict[str, Backend] = {
    b.name: b for b in (NutpieBackend(), PymcBackend(), NumpyroBackend())
}
BACKENDS: tuple[str, ...] = tuple(REGISTRY)
DEFAULT_BACKEND = "nutpie"


def unknown_backend(name: str) -> str:
    """The message for a backend name that is not in ``REGISTRY``."""
    return f"backend '{name}' is unknown; expected one of {BACKENDS}"


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a ``FitError`` listing the valid names otherwise."""
    if name not in REGISTRY:
        raise FitError(f"invalid sampler settings: {unknown_backend(name)}")
    return REGISTRY[name]


def run_nuts(
    model: pm.Model, cfg: SamplerConfig, run: NutsRun, compiled: Any = None
) -> xr.DataTree:
    """One NUTS run of ``model`` on ``cfg.backend`` (``compiled``: from its ``compile``)."""
    return get_backend(cfg.backend).sample(model, cfg, run, compiled)


def leapfrog_steps(tree: xr.DataTree) -> dict[str, int]:
    """Leapfrog steps (gradient evaluations) in the warm-up and draw phases of a NUTS run.

    A phase whose statistics the backend did not return (numpyro keeps no warm-up) counts -1.
    """
    out = {}
    for phase, group in (("warmup", "warmup_sample_stats"), ("draws", "sample_stats")):
        stats = tree[group].to_dataset() if group in tree.children else None
        name = next((n for n in ("n_steps", "tree_size") if stats is not None and n in stats), None)
        out[phase] = int(stats[name].sum()) if stats is not None and name else -1
    return out
