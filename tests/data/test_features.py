"""Exposures against hand-computed values: patterns, lags across gaps and user boundaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hbm.data.diary import validate_frame
from hbm.data.exposures import exposure_prevalence, exposures, impact, select_users

from ..conftest import small_diary_frame


def test_impact_is_piecewise_linear_and_flat_outside(small_priors):
    f = small_priors.feature("screen_hours")  # levels 0, 4, 10 -> RR 1.0, 1.0, 1.5
    got = impact(f, np.array([0.0, 2.0, 4.0, 7.0, 10.0, 14.0]))
    np.testing.assert_allclose(got, [0.0, 0.0, 0.0, 0.5, 1.0, 1.0])


def test_impact_of_a_decreasing_pattern(small_priors):
    f = small_priors.feature("pressure_drop")  # levels -8, 0 -> RR 1.4, 1.0: a fall is risky
    np.testing.assert_allclose(
        impact(f, np.array([-12.0, -8.0, -2.0, 0.0, 5.0])), [1.0, 1.0, 0.25, 0.0, 0.0]
    )


def _diary(small_priors, frame: pd.DataFrame):
    return validate_frame(frame, small_priors, source="<test>")


def test_lags_and_changes_use_calendar_days_of_the_same_user(small_priors):
    frame = small_diary_frame(n_users=2, n_days=5)
    # p0 loses 3 March: its 4 March lag-1 value is unknown, not 2 March's value.
    frame = frame.drop(index=[2]).reset_index(drop=True)
    diary = _diary(small_priors, frame)
    design = exposures(diary, small_priors)
    data = diary.data
    k_choc = design.features.index("chocolate")  # lag 1, binary (chocolate = day index % 2)
    k_drop = design.features.index("pressure_drop")  # change of pressure (falls 1 hPa a day)
    raw_choc = design.exposure[:, k_choc]
    raw_drop = design.exposure[:, k_drop]
    mean_choc, mean_drop = design.exposure_means.means[k_choc], design.exposure_means.means[k_drop]
    p0 = (data.user_id == "p0").to_numpy()
    # chocolate on 1..5 March is 0, 1, 0, 1, 0. p0 keeps 1, 2, 4, 5 March; lag 1 reads
    # 28 Feb (not logged), 1 March (0), 3 March (dropped: unknown), 4 March (1).
    expected_p0 = [mean_choc, 0.0, mean_choc, 1.0]
    np.testing.assert_allclose(raw_choc[p0], expected_p0)
    # p1's first day must not borrow p0's last day.
    p1 = ~p0
    np.testing.assert_allclose(raw_choc[p1], [mean_choc, 0.0, 1.0, 0.0, 1.0])
    # change: -1 hPa a day -> RR interpolates 1.0 + 0.4/8 = 1.05 -> exposure 0.125
    np.testing.assert_allclose(raw_drop[p1], [mean_drop, 0.125, 0.125, 0.125, 0.125])
    np.testing.assert_allclose(raw_drop[p0], [mean_drop, 0.125, mean_drop, 0.125])
    assert design.lag_filled == {"screen_hours": 0, "chocolate": 3, "pressure_drop": 3}


def test_centring_means_are_training_means_and_reused(small_priors):
    diary = _diary(small_priors, small_diary_frame(n_users=2, n_days=5))
    design = exposures(diary, small_priors)
    # screen hours 2..6 h; RR is 1.0 up to 4 h, then rises 0.5 over 6 h: exposures
    # 0, 0, 0, 1/6, 2/6 for each user
    k = design.features.index("screen_hours")
    assert design.exposure_means.means[k] == pytest.approx((1 / 6 + 2 / 6) / 5)
    np.testing.assert_allclose(
        design.x[:, k], design.exposure[:, k] - design.exposure_means.means[k]
    )
    # a new diary centred with the stored means
    later = _diary(small_priors, small_diary_frame(n_users=1, n_days=3))
    reused = exposures(later, small_priors, exposure_means=design.exposure_means)
    assert reused.exposure_means == design.exposure_means
    np.testing.assert_allclose(
        reused.x[:, k], reused.exposure[:, k] - design.exposure_means.means[k]
    )


def test_user_index_and_prevalence(small_priors):
    diary = _diary(small_priors, small_diary_frame(n_users=3, n_days=4))
    design = exposures(diary, small_priors)
    assert design.users == ("p0", "p1", "p2")
    np.testing.assert_array_equal(np.bincount(design.user_index), [4, 4, 4])
    prev = exposure_prevalence(design)
    assert prev["screen_hours"] == 0.0  # 2-5 h: exposure at most 1/6, below 0.5
    assert set(prev) == set(design.features)


def test_select_users_keeps_their_rows_and_reindexes(small_priors):
    design = exposures(_diary(small_priors, small_diary_frame(n_users=4, n_days=3)), small_priors)
    sub = select_users(design, np.array([3, 1]))
    assert sub.users == ("p1", "p3")  # in the design's order, whatever order they were asked in
    np.testing.assert_array_equal(sub.user_index, [0, 0, 0, 1, 1, 1])
    for j, user in enumerate(sub.users):
        rows = design.user_index == design.users.index(user)
        np.testing.assert_array_equal(sub.x[sub.user_index == j], design.x[rows])
        np.testing.assert_array_equal(sub.y[sub.user_index == j], design.y[rows])
    assert sub.exposure_means == design.exposure_means
