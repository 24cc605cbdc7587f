"""Stage 1, data: the priors file, diaries, exposures (the design) and simulated cohorts."""
