"""Apply each wrong change that issue 19 listed as "not caught", run the tests named to catch it,
and restore the file. Prints one line per change; exit 1 if any change survives its tests.

    python scripts/named_mutations.py      (from the repository root, with the dev environment)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: (what the change does, file, original text, mutated text, tests that must fail)
CHANGES = [
    (
        "ROPE class rule: & changed to |",
        "hbm/results/tables.py",
        "out[(lb >= -rope) & (ub <= rope)]",
        "out[(lb >= -rope) | (ub <= rope)]",
        [
            "tests/results/test_posterior_rules.py::test_classify_every_rope_edge_with_the_default_rope"
        ],
    ),
    (
        "ROPE default 0.2 -> 0.1",
        "hbm/defaults.py",
        "ROPE = 0.2\n",
        "ROPE = 0.1\n",
        [
            "tests/results/test_posterior_rules.py::test_classify_every_rope_edge_with_the_default_rope"
        ],
    ),
    (
        "confidence: variance ratio -> SD ratio",
        "hbm/results/tables.py",
        'var_w = w.var(("chain", "draw"))\n    ref = (tau**2).mean(("chain", "draw"))',
        'var_w = w.std(("chain", "draw"))\n    ref = np.sqrt((tau**2).mean(("chain", "draw")))',
        [
            "tests/results/test_posterior_rules.py::test_confidence_is_one_minus_the_variance_ratio_by_hand"
        ],
    ),
    (
        "confidence: E[tau^2] -> E[tau]^2",
        "hbm/results/tables.py",
        'ref = (tau**2).mean(("chain", "draw"))',
        'ref = tau.mean(("chain", "draw")) ** 2',
        [
            "tests/results/test_posterior_rules.py::test_confidence_is_one_minus_the_variance_ratio_by_hand"
        ],
    ),
    (
        "gate: min_ess_bulk 400 -> 40",
        "hbm/defaults.py",
        "min_ess_bulk: float = 400.0",
        "min_ess_bulk: float = 40.0",
        [
            "tests/inference/test_gate.py::test_default_thresholds_are_the_documented_ones",
            "tests/inference/test_gate.py::test_gate_reasons_at_each_threshold",
        ],
    ),
    (
        "gate: reliable forced to False",
        "hbm/inference/diagnostics.py",
        "reliable=not reasons,",
        "reliable=False,",
        [
            "tests/inference/test_gate.py::test_well_mixed_draws_pass_with_arviz_figures",
            "tests/app/test_cli.py::test_default_fit_of_a_small_cohort_is_reliable_and_strict_exits_zero",
        ],
    ),
    (
        "bootstrap: 95% percentiles -> 90%",
        "hbm/evaluation/metrics.py",
        "ci_prob: float = 0.95,",
        "ci_prob: float = 0.90,",
        ["tests/evaluation/test_evaluate_rules.py::test_bootstrap_defaults"],
    ),
    (
        "bootstrap: Brier averaged per user instead of per day",
        "hbm/evaluation/metrics.py",
        "brier_boot = d_sse[idx].sum(axis=1) / n[idx].sum(axis=1)",
        "brier_boot = (d_sse / n)[idx].mean(axis=1)",
        ["tests/evaluation/test_evaluate_rules.py::test_brier_and_log_loss_are_pooled_per_day"],
    ),
    (
        "atomic writer writes straight to the target",
        "hbm/results/io.py",
        "    with atomic_path(target) as tmp:\n        writer(tmp)\n",
        "    writer(Path(target))\n",
        ["tests/results/test_io_rules.py::test_failed_csv_write_keeps_old_file_and_leaves_no_temp"],
    ),
]


def main() -> int:
    survived = 0
    for what, name, old, new, tests in CHANGES:
        path = Path(name)
        source = path.read_text()
        if source.count(old) != 1:
            print(f"SKIPPED  {what}: the original text is not in {name} exactly once")
            survived += 1
            continue
        try:
            path.write_text(source.replace(old, new))
            run = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
                capture_output=True,
                text=True,
            )
        finally:
            path.write_text(source)
        caught = run.returncode == 1
        survived += not caught
        verdict = "caught  " if caught else "SURVIVED"
        print(f"{verdict} {what}: {' '.join(t.split('::')[1] for t in tests)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
