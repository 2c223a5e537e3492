"""behind_share: is the start's dominant cluster a corner of the data, or its middle?"""

import numpy as np

from esmpy_hs.nmf._init import anchored_spa_labels, behind_share, kmeans_maximin

#: features of three pure phases (rows sum to 1, as the start's normalised features do)
PURE = np.array([[0.8, 0.1, 0.1, 0.0], [0.1, 0.1, 0.0, 0.8], [0.0, 0.2, 0.7, 0.1]])


def _clustered(abundances: np.ndarray):
    """(features, weights, labels) of blocks of 3000 counts, labelled as the start does."""
    F = abundances @ PURE
    w = np.full(len(F), 3000.0)
    return F, w, anchored_spa_labels(F, w, kmeans_maximin(F, w, 3), 3)


def _share(abundances: np.ndarray) -> float:
    return behind_share(*_clustered(abundances), 3)


def test_a_matrix_seen_pure_is_a_corner():
    # 70 % of the blocks pure matrix, the rest with up to half of one particle each
    rng = np.random.default_rng(0)
    a = np.zeros((400, 3))
    a[:, 0] = 1.0
    for j, rows in ((1, slice(280, 340)), (2, slice(340, 400))):
        a[rows, j] = rng.uniform(0.05, 0.5, 60)
        a[rows, 0] = 1.0 - a[rows, j]
    assert _share(a) == 0.0


def test_phases_spread_through_the_matrix_put_blocks_behind_it():
    # every block holds both minor phases, each from 0 to 1/3, independently
    rng = np.random.default_rng(0)
    minors = rng.uniform(0.0, 1 / 3, (400, 2))
    a = np.column_stack([1.0 - minors.sum(axis=1), minors])
    share = _share(a)
    assert share > 0.2  # measured 0.2–0.5 on such maps (docs/validation.rst)
    # the depth sets what counts as behind: none at all is further than the whole way
    F, w, labels = _clustered(a)
    assert behind_share(F, w, labels, 3, depth=1.5) == 0.0
    assert behind_share(F, w, labels, 1) == 0.0
