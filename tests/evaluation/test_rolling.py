"""The rolling-origin split and the hbm-no-clustering model, on a diary written by hand.

User ``a`` logs 12 days in March 2025 with 5 March missing (1-4, 6-13); 11 March is an onset and
12 March is inside that attack (``migraine_continues``), so it is not a row of any design. User
``b`` logs 8 days (1-8 March). With test fraction 0.25 and 3 origins the origins lie at 75%,
83.3% and 91.7% of each user's days:

* ``a`` (12 days): floor(12 x .75) = 9, floor(12 x 5/6) = 10, floor(12 x 11/12) = 11;
* ``b`` (8 days): floor(6) = 6, floor(6.67) = 6, floor(7.33) = 7.

So the fit at origin 0 trains on a's first 9 days (1-10 March without 5) and b's first 6, and
forecasts a's 11 March (b's block is empty); origin 1 adds a's 11 March and forecasts b's 7
March (a's block is 12 March, not at risk); origin 2 adds b's 7 March (a's 12 March is not a
row) and forecasts a's 13 and b's 8 March.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hbm.data.diary import validate_frame
from hbm.data.exposures import exposures
from hbm.data.priors import parse_priors, without_clustering
from hbm.errors import HBMError
from hbm.evaluation.baselines import (
    MODELS,
    default_models,
    model_design,
    model_priors,
)
from hbm.evaluation.compare import fit_seed
from hbm.evaluation.splits import origin_fractions, rolling_folds, rolling_masks, split_folds

from .priors_docs import clustering_priors_doc


@pytest.fixture(scope="module")
def clustering_priors():
    return parse_priors(json.dumps(clustering_priors_doc()))


A_DAYS = [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]
B_DAYS = [1, 2, 3, 4, 5, 6, 7, 8]


def _frame() -> pd.DataFrame:
    rows = []
    for user, days in (("a", A_DAYS), ("b", B_DAYS)):
        for d in days:
            rows.append(
                {
                    "user_id": user,
                    "date": f"2025-03-{d:02d}",
                    "migraine": int((user, d) in {("a", 11), ("a", 2), ("b", 3)}),
                    "migraine_continues": int((user, d) == ("a", 12)),
                    "screen_hours": 3.0,
                    "chocolate": int((user, d) == ("a", 10)),
                    "pressure": 1010.0,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def diary(clustering_priors):
    return validate_frame(_frame(), clustering_priors, min_days=1)


def _days(design, user):
    """The March days of a user's rows in a design."""
    sel = design.user_index == design.users.index(user)
    return pd.DatetimeIndex(design.dates[sel]).day.tolist()


def test_origin_fractions_are_the_documented_ones():
    assert origin_fractions(0.25, 3) == pytest.approx([0.75, 1 - 1 / 6, 1 - 1 / 12])
    assert origin_fractions(0.3, 1) == pytest.approx([0.7])
    for bad in ((0.25, 0), (0.0, 3), (1.0, 3)):
        with pytest.raises(HBMError):
            origin_fractions(*bad)


def test_rolling_masks_over_diary_rows(diary):
    # diary rows: a's 12 days, then b's 8 (sorted by user, then date)
    expected = [
        (list(range(9)) + list(range(12, 18)), [9]),
        (list(range(10)) + list(range(12, 18)), [10, 18]),
        (list(range(11)) + list(range(12, 19)), [11, 19]),
    ]
    masks = rolling_masks(diary, 0.25, 3)
    assert len(masks) == 3
    for (train, test), (want_train, want_test) in zip(masks, expected, strict=True):
        assert np.flatnonzero(train).tolist() == want_train
        assert np.flatnonzero(test).tolist() == want_test


def test_rolling_blocks_train_and_test_rows_by_hand(diary, clustering_priors):
    folds = rolling_folds(diary, clustering_priors, 0.25, 3)
    assert [f.origin for f in folds] == [0, 1, 2]
    assert [f.fraction for f in folds] == pytest.approx([0.75, 5 / 6, 11 / 12])
    a_train = [[1, 2, 3, 4, 6, 7, 8, 9, 10], [1, 2, 3, 4, 6, 7, 8, 9, 10, 11]]
    a_train.append(a_train[1])  # 12 March is inside an attack: never a row
    b_train = [[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6, 7]]
    a_test, b_test = [[11], [], [13]], [[], [7], [8]]
    for i, fold in enumerate(folds):
        assert _days(fold.train, "a") == a_train[i] and _days(fold.train, "b") == b_train[i]
        assert _days(fold.test, "a") == a_test[i] and _days(fold.test, "b") == b_test[i]


def test_no_test_outcome_trains_its_own_fit_and_each_later_day_is_forecast_once(
    diary, clustering_priors
):
    folds = rolling_folds(diary, clustering_priors, 0.25, 3)
    forecast = []
    for fold in folds:
        for user in ("a", "b"):
            train, test = _days(fold.train, user), _days(fold.test, user)
            assert not set(train) & set(test)
            assert not test or max(train) < min(test)
            forecast += [(user, d) for d in test]
    # the temporal split's test days (a: the last 3 of 12, b: the last 2 of 8), less 12 March
    assert sorted(forecast) == [("a", 11), ("a", 13), ("b", 7), ("b", 8)]


def test_each_origin_is_centred_on_its_own_training_days(diary, clustering_priors):
    """Chocolate is eaten once, by a on 10 March; its exposure (one day's lag) is 1 on 11 March.

    Known lagged days among the training rows (a's 1 and 6 March and b's 1 March have no logged
    day before; means include every training day, at risk or not): origin 0: a 7 + b 5, none
    exposed -> 0; origin 1: + a's 11 March (exposed) -> 1/13; origin 2: + a's 12 March and b's
    7 March -> 1/15. The previous day's attack state of a's 13 March (12 March, inside the
    attack) is 1, read from an earlier day's outcome.
    """
    folds = rolling_folds(diary, clustering_priors, 0.25, 3)
    k = clustering_priors.keys.index("chocolate")
    means = [fold.train.exposure_means.means[k] for fold in folds]
    assert means == pytest.approx([0.0, 1 / 13, 1 / 15])
    for fold in folds:
        assert fold.test.exposure_means == fold.train.exposure_means
    last = folds[2].test
    row = _days(last, "a").index(13)
    on_13 = last.exposure[last.user_index == last.users.index("a")][row]
    assert on_13[clustering_priors.keys.index("attack_yesterday")] == pytest.approx(1.0)


def test_one_origin_is_the_temporal_split(diary, clustering_priors):
    (rolling,) = split_folds(diary, clustering_priors, "rolling", 0.25, origins=1)
    (temporal,) = split_folds(diary, clustering_priors, "temporal", 0.25)
    for part in ("train", "test"):
        r, t = getattr(rolling, part), getattr(temporal, part)
        np.testing.assert_array_equal(r.x, t.x)
        np.testing.assert_array_equal(r.diary_rows, t.diary_rows)
    with pytest.raises(HBMError, match="'rolling'"):
        split_folds(diary, clustering_priors, "random", 0.25)


def test_origins_are_whole_days_despite_floating_point(clustering_priors):
    """In floating point 1 - 0.2 * 3 / 3 is 0.7999999999999999: 5, 10 and 15 days would train
    on 3, 7 and 11 days at origin 0, not on the 4, 8 and 12 the temporal split trains on."""
    frame = pd.DataFrame(
        [
            {"user_id": f"u{n}", "date": f"2025-03-{d + 1:02d}", "migraine": d % 2}
            | {"screen_hours": 3.0, "chocolate": 0, "pressure": 1010.0}
            for n in (5, 10, 15)
            for d in range(n)
        ]
    )
    short = validate_frame(frame, clustering_priors, min_days=1)
    first_train, first_test = rolling_masks(short, 0.2, 3)[0]
    sizes = short.data.assign(t=first_train).groupby("user_id")["t"].sum()
    assert sizes.to_dict() == {"u5": 4, "u10": 8, "u15": 12}
    assert not (first_train & first_test).any()


def test_fit_seeds_follow_model_and_origin_not_order():
    assert fit_seed(2026, "hbm", 1) == fit_seed(2026, "hbm", 1)
    seeds = {fit_seed(2026, m, o) for m in ("hbm", "global", "no-pooling") for o in range(3)}
    assert len(seeds) == 9 and all(0 <= s < 2**32 for s in seeds)
    assert fit_seed(2026, "hbm", 0) != fit_seed(7, "hbm", 0)


def test_hbm_no_clustering_drops_the_attack_yesterday_column(diary, clustering_priors):
    design = exposures(diary, clustering_priors)
    dropped = model_design("hbm-no-clustering", design, clustering_priors)
    assert dropped.features == ("screen_hours", "chocolate", "pressure_drop")
    assert model_priors("hbm-no-clustering", clustering_priors).keys == dropped.features
    # what the priors without clustering build, centring included
    own = exposures(diary, without_clustering(clustering_priors))
    np.testing.assert_array_equal(dropped.x, own.x)
    np.testing.assert_array_equal(dropped.exposure, own.exposure)
    assert dropped.exposure_means == own.exposure_means
    assert dict(dropped.lag_filled) == dict(own.lag_filled)
    np.testing.assert_array_equal(dropped.diary_rows, own.diary_rows)
    assert model_design("hbm", design, clustering_priors) is design
    assert model_priors("hbm", clustering_priors) is clustering_priors


def test_hbm_no_clustering_is_a_default_model_only_with_clustering(clustering_priors):
    assert "hbm-no-clustering" in MODELS
    assert default_models(clustering_priors) == MODELS
    plain = without_clustering(clustering_priors)
    assert default_models(plain) == tuple(m for m in MODELS if m != "hbm-no-clustering")
    # without a clustering block it is hbm: the same priors and design
    design = exposures(validate_frame(_frame(), plain, min_days=1), plain)
    assert model_priors("hbm-no-clustering", plain) is plain
    assert model_design("hbm-no-clustering", design, plain) is design


def test_more_origins_than_test_days_are_refused_before_any_fit(diary, clustering_priors):
    """`--origins 60` on users with about 36 test days fitted models that forecast nothing.
    Here user a's last quarter is 3 days and b's 2: 60 origins leave empty blocks."""
    from hbm.evaluation.splits import rolling_folds

    with pytest.raises(HBMError, match=r"60 origins leave \d+ block\(s\) without a test day"):
        rolling_folds(diary, clustering_priors, 0.25, 60)
    assert len(rolling_folds(diary, clustering_priors, 0.25, 2)) == 2
