"""Choosing which candidate frames to label: seeded random picks or farthest point sampling (plain functions)."""

from __future__ import annotations

import itertools

import numpy as np

METHODS = ('random', 'fps')


def partial_rdf_fingerprint(atoms, elements: list[str], r_max: float = 5.0, bins: int = 25) -> np.ndarray:
    """Concatenated partial radial distribution functions g_ab(r) of one frame, a structural fingerprint.

    One histogram per unordered element pair of ``elements`` (0 < r <= ``r_max`` Å, ``bins`` bins), normalized
    like g(r) so that frames of different volume or size compare. Pairs absent from the frame give zeros.
    """
    from ase.neighborlist import neighbor_list

    symbols = np.array(atoms.get_chemical_symbols())
    volume = atoms.get_volume()
    edges = np.linspace(0.0, r_max, bins + 1)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    i, j, d = neighbor_list('ijd', atoms, r_max)
    parts = []
    for a, b in itertools.combinations_with_replacement(elements, 2):
        n_a, n_b = int(np.sum(symbols == a)), int(np.sum(symbols == b))
        if n_a == 0 or n_b == 0:
            parts.append(np.zeros(bins))
            continue
        mask = (symbols[i] == a) & (symbols[j] == b)  # ordered pairs i in a, j in b
        hist, _ = np.histogram(d[mask], bins=edges)
        parts.append(hist * volume / (n_a * n_b * shell))
    return np.concatenate(parts)


def farthest_point_sampling(features, n: int, first: int = 0) -> list[int]:
    """Indices of ``n`` distinct rows of ``features``, each the farthest (Euclidean) from those already chosen.

    Starts from row ``first``. Returns all rows when ``n`` exceeds their number.
    """
    features = np.asarray(features, dtype=float).reshape(len(features), -1)
    total = len(features)
    n = min(int(n), total)
    if n <= 0:
        return []
    chosen = [int(first)]
    distance = np.linalg.norm(features - features[first], axis=1)
    distance[first] = -np.inf
    while len(chosen) < n:
        # chosen rows are at -inf, so duplicates of chosen frames (distance 0) still come before them
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(features - features[nxt], axis=1))
        distance[chosen] = -np.inf
    return chosen


def select(n_frames: int, max_selected: int, method: str = 'random', seed: int = 0, features=None, scores=None) -> list[int]:
    """Indices (sorted) of at most ``max_selected`` of ``n_frames`` candidate frames.

    :param method: ``'random'`` (uniform without replacement, seeded) or ``'fps'`` (farthest point sampling
        on ``features``, starting from the frame of highest ``scores``, e.g. the model deviation, or frame 0).
    :raises ValueError: an unknown method, or ``fps`` without features for every frame.
    """
    if method not in METHODS:
        raise ValueError(f'selection method must be one of {METHODS}, got {method!r}')
    n = min(int(max_selected), int(n_frames))
    if n <= 0:
        return []
    if n == n_frames:
        return list(range(n_frames))
    if method == 'random':
        rng = np.random.default_rng(seed)
        return sorted(int(k) for k in rng.choice(n_frames, size=n, replace=False))
    if features is None or len(features) != n_frames:
        raise ValueError('farthest point sampling needs one feature vector per frame')
    first = int(np.nanargmax(scores)) if scores is not None and np.isfinite(scores).any() else 0
    return sorted(farthest_point_sampling(features, n, first=first))


def quotas(counts, total: int) -> list[int]:
    """Split ``total`` picks over groups of ``counts`` candidates, proportionally (largest remainders).

    Every group with candidates gets at least one pick while picks last (a rare condition is still
    learned), and no group gets more than it has. The quotas sum to ``min(total, sum(counts))``.
    """
    counts = [int(c) for c in counts]
    if any(c < 0 for c in counts):
        raise ValueError(f'counts must be non-negative, got {counts}')
    budget = min(int(total), sum(counts))
    result = [0] * len(counts)
    # one each first, to the groups with the most candidates when there are fewer picks than groups
    for index in sorted((i for i, c in enumerate(counts) if c > 0), key=lambda i: -counts[i])[:budget]:
        result[index] = 1
    left = budget - sum(result)
    while left > 0:
        room = [c - r for c, r in zip(counts, result)]
        weight = sum(max(x, 0) for x in room)
        shares = [left * max(x, 0) / weight for x in room]
        extra = [min(int(np.floor(share)), x) for share, x in zip(shares, room)]
        if sum(extra) == 0:  # all shares < 1: the largest remainders take one each
            order = sorted((i for i in range(len(counts)) if room[i] > 0), key=lambda i: (-shares[i], i))
            for i in order[:left]:
                extra[i] = 1
        result = [r + e for r, e in zip(result, extra)]
        left = budget - sum(result)
    return result


def too_close(atoms, ratio: float) -> bool:
    """Whether two atoms of ``atoms`` are closer than ``ratio`` times the sum of their covalent radii.

    Such a frame is unphysical (an MD with an immature potential let atoms overlap): labeling it teaches
    nothing and can poison training (a universal potential may even have a hole there; SevenNet-0 gives
    -130 eV/atom for O-O at 0.92 Å). The same idea as dpgen2's ``DistanceConfFilter``.
    """
    from aiida_liqcryst.evolution import operators

    if ratio <= 0:
        return False
    return operators.too_close(atoms, operators.closest_distances(set(atoms.get_chemical_symbols()), ratio))
