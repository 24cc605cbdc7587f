"""The held-out splits of ``hbm compare``: train and test designs, never rows chosen at random.

* ``temporal``: within each user, the first ``floor(n * (1 - test_fraction))`` of their ``n``
  logged days train, the rest test (``hbm.data.diary.train_mask``).
* ``users``: a ``test_fraction`` share of users (chosen by ``seed``) are held out whole.
* ``rolling`` (rolling origin, ``origins`` = N): within each user of ``n`` logged days, origin
  ``i`` (``i = 0 .. N-1``) lies at the fraction ``f_i = 1 - test_fraction * (N - i) / N`` of
  their days, at day ``c_i = floor(n * f_i)`` (0-based; ``c_N = n``). The fit at origin ``i``
  trains on days ``[0, c_i)`` and forecasts days ``[c_i, c_(i+1))``, the block up to the next
  origin (the last block to the end). With ``test_fraction`` 0.25 and N = 3 the origins are at
  75%, 83.3% and 91.7%; origin 0 is the temporal split's, and the blocks together are its test
  days, each forecast once, by the fit at the latest origin before it.

In the temporal and rolling splits exposures are built on the whole diary (a lag at a boundary
reads the real day before; the previous day's attack state of a test day is an earlier day's
outcome) with centring means from that fit's training rows only, then rows are taken: no
outcome of a test day is in its own fit's training rows. Masks are over diary rows and are taken
at a design's rows with ``Design.rows_of``: days inside a continuing attack are not rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hbm.data.diary import Diary, leading_days, split_by_time, subset_users, train_mask
from hbm.data.exposures import Design, day_rank, exposures, select_rows
from hbm.data.priors import Priors
from hbm.defaults import ORIGINS, TEST_FRACTION
from hbm.errors import HBMError

#: ``floor(n * f)`` is taken with this tolerance: in floating point ``5 * (1 - 0.2 * 3 / 3)`` is
#: 3.9999999999999996, and 4 of 5 days is meant (as the temporal split's ``1 - 0.2`` gives).
_FLOOR_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Fold:
    """One fit of a split: its training and test designs (the same centring).

    ``origin`` is the rolling split's origin index (``None`` for the other splits) and
    ``fraction`` the share of each user's days before it.
    """

    train: Design
    test: Design
    origin: int | None = None
    fraction: float | None = None


def temporal_designs(
    diary: Diary, priors: Priors, test_fraction: float = TEST_FRACTION
) -> tuple[Design, Design]:
    """Train and test designs of the temporal split (module doc)."""
    is_train = train_mask(diary, test_fraction)
    exposure_means = exposures(split_by_time(diary, test_fraction)[0], priors).exposure_means
    full = exposures(diary, priors, exposure_means=exposure_means)  # rows in diary.data order
    return select_rows(full, full.rows_of(is_train)), select_rows(full, full.rows_of(~is_train))


def first_part(design: Design, fraction: float) -> Design:
    """The first ``fraction`` of each user's days of a design (for weight stability)."""
    rank, size = day_rank(design)
    return select_rows(design, leading_days(rank, size, fraction, at_least=1))


def users_designs(
    diary: Diary, priors: Priors, test_fraction: float = TEST_FRACTION, seed: int = 0
) -> tuple[Design, Design]:
    """Train and test designs of the leave-users-out split (module doc)."""
    users = list(diary.users)
    n_test = max(1, round(len(users) * test_fraction))
    if n_test >= len(users):
        raise HBMError(f"cannot hold out {n_test} of {len(users)} users")
    held = set(np.random.default_rng(seed).choice(users, size=n_test, replace=False).tolist())
    train = exposures(subset_users(diary, [u for u in users if u not in held]), priors)
    test = exposures(
        subset_users(diary, [u for u in users if u in held]),
        priors,
        exposure_means=train.exposure_means,
    )
    return train, test


def origin_fractions(test_fraction: float = TEST_FRACTION, origins: int = ORIGINS) -> list[float]:
    """``f_i = 1 - test_fraction * (origins - i) / origins`` for ``i = 0 .. origins - 1``."""
    if not 0.0 < test_fraction < 1.0:
        raise HBMError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if origins < 1:
        raise HBMError(f"origins must be at least 1, got {origins}")
    return [1.0 - test_fraction * (origins - i) / origins for i in range(origins)]


def rolling_masks(
    diary: Diary, test_fraction: float = TEST_FRACTION, origins: int = ORIGINS
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per origin, masks over ``diary.data``'s rows: (days before it, days of its block)."""
    data = diary.data
    rank = data.groupby("user_id", sort=False).cumcount().to_numpy()
    size = data.groupby("user_id", sort=False)["date"].transform("size").to_numpy()
    cuts = [np.floor(size * f + _FLOOR_TOLERANCE) for f in origin_fractions(test_fraction, origins)]
    cuts.append(size.astype(float))
    return [(rank < cuts[i], (rank >= cuts[i]) & (rank < cuts[i + 1])) for i in range(origins)]


def rolling_folds(
    diary: Diary, priors: Priors, test_fraction: float = TEST_FRACTION, origins: int = ORIGINS
) -> list[Fold]:
    """The rolling split's fits (module doc): at each origin, training and test block designs."""
    folds = []
    fractions = origin_fractions(test_fraction, origins)
    masks = rolling_masks(diary, test_fraction, origins)
    empty = [i for i, (_, is_test) in enumerate(masks) if not is_test.any()]
    if empty:
        raise HBMError(
            f"{origins} origins leave {len(empty)} block(s) without a test day (first: origin "
            f"{empty[0]}); each user's last {test_fraction:g} of days is cut into the blocks: "
            "use fewer origins"
        )
    for i, (is_train, is_test) in enumerate(masks):
        # the training days alone give the centring means; a prefix of each user's days, so
        # every lag of a training day reads a training day (as ``split_by_time``'s diary)
        before = replace(diary, data=diary.data[is_train].reset_index(drop=True))
        full = exposures(diary, priors, exposure_means=exposures(before, priors).exposure_means)
        train = select_rows(full, full.rows_of(is_train))
        test = select_rows(full, full.rows_of(is_test))
        folds.append(Fold(train, test, origin=i, fraction=fractions[i]))
    return folds


def split_folds(
    diary: Diary,
    priors: Priors,
    split: str,
    test_fraction: float = TEST_FRACTION,
    origins: int = ORIGINS,
    seed: int = 0,
) -> list[Fold]:
    """The fits of a split (module doc): one fold for ``temporal`` and ``users``."""
    if split == "temporal":
        return [Fold(*temporal_designs(diary, priors, test_fraction))]
    if split == "users":
        return [Fold(*users_designs(diary, priors, test_fraction, seed))]
    if split == "rolling":
        return rolling_folds(diary, priors, test_fraction, origins)
    raise HBMError(f"split '{split}' is unknown; expected 'temporal', 'users' or 'rolling'")
