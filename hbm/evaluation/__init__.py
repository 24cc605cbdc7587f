"""Stage 5, evaluation: baselines, the neural model, metrics, comparison, the study, decide."""
