"""The defaults a user meets, in one place: intervals, ROPE, spread threshold, data rules.

Every module that uses one of these imports it from here, so a change of a default is one line
and every export, table, test and document that names it follows. Nothing here imports any other
part of hbm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CiKind = Literal["eti", "hdi"]

#: Credible intervals: probability and kind (ArviZ's own default is an 89% ETI; hbm always passes
#: both and records them in every table).
CI_PROB = 0.90
CI_KIND: CiKind = "eti"
CI_KINDS: tuple[CiKind, ...] = ("eti", "hdi")

#: Region of practical equivalence on the log-odds scale: |w| < 0.2 is an odds ratio of
#: 0.82-1.22, smaller than every non-null effect in the priors' evidence.
ROPE = 0.2

#: Trigger and protector calls control the posterior expected false-discovery proportion of the
#: run's calls at this level (``hbm.results.calls``). 2%, not 5%: per-user posteriors are
#: overconfident at a fixed between-user spread (90% intervals cover 81-90% of true weights on
#: 50 x 365 cohorts), so the realized proportion exceeds the expected one. On 12 simulated
#: cohorts (docs/honest-triggers.md) a 5% level realized 0-25% false calls (median 7.6%), a 2%
#: level 0-10% (median 0%, within 5% on 11 of 12).
FDR_LEVEL = 0.02

#: A between-user SD (log-odds) above which users are said to differ on a feature (the earlier
#: study's threshold); the population table's column ``SPREAD_COLUMN`` holds P(tau > SPREAD).
SPREAD = 0.3
SPREAD_COLUMN = f"p_tau_above_{SPREAD:g}"

#: Users with fewer logged days are flagged (kept, and shrunk towards the population).
MIN_DAYS = 30

#: The last share of each user's days held out for testing (``hbm compare``, ``hbm study``).
TEST_FRACTION = 0.25

#: Origins of ``hbm compare --split rolling``: at 1 - TEST_FRACTION * (N - i) / N of each user's
#: days (75%, 83.3%, 91.7%), each fit forecasting the days up to the next.
ORIGINS = 3

#: Simulated new users behind the report's "days needed" section.
DAYS_NEEDED_USERS = 40


@dataclass(frozen=True)
class Gate:
    """Thresholds a fit must meet to be called reliable (``hbm.inference.diagnostics``)."""

    max_rhat: float = 1.01
    min_ess_bulk: float = 400.0
    min_ess_tail: float = 400.0
    max_divergences: int = 0
    min_ebfmi: float = 0.3
    #: Family-wise level of the rank-ECDF test that the chains agree (ArviZ's multi-chain
    #: uniformity test on each population cell, thinned to its ESS): a cell fails below
    #: ``min_rank_p / cells tested`` (Bonferroni), so a sound fit fails it 1% of the time.
    min_rank_p: float = 0.01


GATE = Gate()

#: The one rule for user ids, checked when a diary is loaded and by the service's URL paths, so
#: that every id that fits can be served, reported and named on a command line. ASCII letters,
#: digits and ``. _ ~ @ + -`` (emails and UUIDs pass; each is a literal character in a URL path),
#: at most ``USER_ID_MAX_LENGTH`` characters, starting with a letter or digit (so that no id is
#: ``.``, ``..`` or looks like a command-line option).
USER_ID_MAX_LENGTH = 128
USER_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._~@+-]{{0,{USER_ID_MAX_LENGTH - 1}}}$"
USER_ID_RULE = (
    f"1 to {USER_ID_MAX_LENGTH} characters: ASCII letters, digits and . _ ~ @ + -, "
    "starting with a letter or digit"
)
