"""Stage 4, results: tables, profiles, predictions, days needed, plots, report, run folders."""
