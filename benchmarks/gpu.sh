#!/usr/bin/env bash
# The large benchmark with numpyro (JAX) on a GPU machine that has JAX with CUDA and numpyro but
# not hbm's other dependencies, and no network. Run from the repository root:
#
#   bash benchmarks/gpu.sh [SIZE] [OUT_DIR] [FIT_SPEED_ARGS...]   # SIZE: large, or tiny to rehearse
#
# Results go to OUT_DIR/results_gpu.json (kept in the repository as benchmarks/results_gpu.json);
# extra arguments go to benchmarks.fit_speed (``--gradients-only`` re-times a stored run's
# gradients: copy results_gpu.json into OUT_DIR first).
#
# The missing packages travel as wheels in .whl/ (scipy, needed >= 1.18 by PyMC's optimizer
# dependency, in .whl/opt/, installed only where the machine's scipy is older), made on a machine
# with pip and network by:
#
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     pymc==6.4.0 pytensor==3.3.8 arviz==1.3.0 arviz-base==1.3.1 arviz-stats==1.3.3 \
#     arviz-plots==1.3.2 better-optimize==0.5.1 cachetools==6.2.6 xarray==2026.9.0 pandas==3.1.1 \
#     jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 \
#     xarray-einstats==0.11.0
#   pip download (same flags) -d .whl/opt scipy==1.18.1
#
# Only JAX's gradient is timed (the C and numba ones are CPU figures, in results.json).
set -euo pipefail
size=${1:-large}
out=${2:-${OUT:-/tmp/hbm-gpu}}
shift $(($# < 2 ? $# : 2))
py=${PYTHON:-python3}
mkdir -p "$out"
wheels=(.whl/*.whl)
if ! "$py" -c 'import sys, scipy; sys.exit(tuple(map(int, scipy.__version__.split(".")[:2])) < (1, 18))'; then
    wheels+=(.whl/opt/scipy-*.whl)
fi
"$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/hbm-site "${wheels[@]}"
export PYTHONPATH=/tmp/hbm-site:.${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
nvidia-smi -L || true
"$py" -c 'import jax, numpyro, pymc, scipy; print("jax", jax.__version__, jax.devices(), "numpyro", numpyro.__version__, "pymc", pymc.__version__, "scipy", scipy.__version__)'
"$py" -m benchmarks.fit_speed --sizes "$size" --backends numpyro --gradients jax \
    --out "$out/results_gpu.json" "$@" 2>&1 | tee -a "$out/gpu.log"
