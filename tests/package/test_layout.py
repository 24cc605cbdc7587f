"""The package's shape: light imports, dependencies pointing one way, no cycles, short code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "hbm"
#: Stages in data-flow order; a module may import only its own stage or those before it.
STAGES = (
    "errors",
    "interrupts",
    "defaults",
    "tasks",
    "data",
    "model",
    "inference",
    "results",
    "evaluation",
    "app",
)
HEAVY = ("pymc", "pytensor", "numba", "jaxlib", "nutpie")  # jax itself: arviz makes a lazy stub


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Modules of hbm that a file imports at module level or in functions (not TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hbm"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hbm")}
    return found


def _stage(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


def test_lower_stages_never_import_higher_ones():
    upward = []
    for name, path in _modules().items():
        own = _stage(name)
        for target in _imports(path):
            other = _stage(target)
            if own is not None and other is not None and other > own:
                upward.append(f"{name} -> {target}")
    assert upward == []


def test_no_import_cycle():
    modules = _modules()
    graph = {
        name: {t for t in _imports(path) if t in modules and t != name}
        for name, path in modules.items()
        if name != "hbm"  # the package's lazy __getattr__ table imports nothing at load
    }
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                return [*stack, node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, node])):
                return cycle
        state[node] = 2
        return None

    for node in graph:
        if node not in state:
            assert visit(node, []) is None


@pytest.mark.parametrize("limit_lines, limit_function", [(450, 80)])
def test_no_module_or_function_too_long(limit_lines, limit_function):
    long = []
    for path in _modules().values():
        text = path.read_text()
        if len(text.splitlines()) > limit_lines:
            long.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit_function:
                    long.append(f"{path.name}:{node.name}: {n} lines")
    assert long == []


LIGHT = [
    "hbm",
    "hbm.errors",
    "hbm.defaults",
    "hbm.data.priors",
    "hbm.data.diary",
    "hbm.data.exposures",
    "hbm.model.population",
    "hbm.results.io",
    "hbm.results.tables",
    "hbm.results.prediction",
    "hbm.results.days_needed",
    "hbm.results.report",
    "hbm.app.service",
    "hbm.app.cli",  # `hbm serve` and every other command start without the sampler stack
]


def test_light_modules_load_no_sampler_stack():
    """``import hbm`` and the data/results modules (and the service) load no PyMC, numba, JAX."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {LIGHT!r}: importlib.import_module(m)\n"
        f"print(json.dumps([h for h in {HEAVY!r} if h in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_public_functions_are_functions_and_modules_stay_modules():
    import hbm
    import hbm.inference.fitting
    import hbm.model.simulation
    import hbm.results.prediction

    assert callable(hbm.fit) and hbm.fit is hbm.inference.fitting.fit
    assert hbm.predict is hbm.results.prediction.predict
    assert hbm.simulate is hbm.model.simulation.simulate
    assert type(sys.modules["hbm.inference.fitting"]).__name__ == "module"
