"""The locality floor with a pairwise potential of known range: exactly zero beyond it, positive inside."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones

from aiida_liqcryst.analysis.locality import displace_outside, locality_floor, pick_centres

RANGE = 3.0  # Å: the Lennard-Jones cut-off, forces on i come from atoms within it only


def lj_liquid(seed=0, n=64, length=10.0):
    """``n`` atoms (two species, so the centres are split) at random in a cubic box, at least 1.0 Å apart."""
    rng = np.random.default_rng(seed)
    positions = []
    while len(positions) < n:
        trial = rng.random(3) * length
        delta = np.array(positions) - trial if positions else np.zeros((0, 3))
        delta -= length * np.round(delta / length)
        if not positions or np.min(np.linalg.norm(delta, axis=1)) >= 1.0:
            positions.append(trial)
    return Atoms(['Ar', 'Ne'] * (n // 2), positions=positions, cell=[length] * 3, pbc=True)


def calculator():
    return LennardJones(sigma=1.0, epsilon=1.0, rc=RANGE, smooth=False)


def test_atoms_within_rc_are_not_moved_and_the_rest_are():
    atoms = lj_liquid()
    centre = int(np.argmin(np.linalg.norm(atoms.get_positions(), axis=1)))  # next to a corner: needs minimum image
    moved = displace_outside(atoms, centre, 4.0, 0.1, np.random.default_rng(1)) - atoms.get_positions()
    inside = atoms.get_distances(centre, np.arange(len(atoms)), mic=True) <= 4.0
    assert inside.sum() > 3 and (~inside).sum() > 3
    assert np.all(moved[inside] == 0)
    assert np.all(np.linalg.norm(moved[~inside], axis=1) > 0)
    assert np.std(moved[~inside]) == pytest.approx(0.1, rel=0.3)


def test_floor_is_zero_beyond_the_range_and_positive_within():
    atoms = lj_liquid()
    sigma = 0.05  # max displacement well below 0.5 Å: nothing crosses from beyond RANGE + 0.5 into RANGE
    # one centre next to a corner: a distance without the minimum image would move its neighbours
    centres = [int(np.argmin(np.linalg.norm(atoms.get_positions(), axis=1))), 5, 10]
    floor = locality_floor(atoms, calculator(), [1.5, 2.0, RANGE + 0.5, 4.5], sigma, n_samples=3, rng=0,
                           centres=centres)
    assert floor[1.5]['rms'] > 0.01 and floor[1.5]['max'] >= floor[1.5]['rms']
    assert floor[2.0]['rms'] > 0.0
    for rc in (RANGE + 0.5, 4.5):
        assert floor[rc]['rms'] == 0.0 and floor[rc]['max'] == 0.0 and floor[rc]['rms_change'] == 0.0
    assert floor[1.5]['moved_mean'] > floor[4.5]['moved_mean'] > 0
    # the floor grows with the displacement (linear response: proportional to sigma)
    larger = locality_floor(atoms, calculator(), [1.5], 2 * sigma, n_samples=3, rng=0, centres=centres)
    assert larger[1.5]['rms'] > floor[1.5]['rms']


def test_centres_cover_both_elements_and_need_two_samples():
    atoms = lj_liquid()
    centres = pick_centres(atoms, 5, np.random.default_rng(0))
    assert len(set(centres)) == 5
    assert set(np.array(atoms.get_chemical_symbols())[centres]) == {'Ar', 'Ne'}
    with pytest.raises(ValueError, match='n_samples'):
        locality_floor(atoms, calculator(), [2.0], 0.1, n_samples=1)


def test_min_distance_redraws_displacements_that_make_close_contacts():
    atoms = lj_liquid()
    rng = np.random.default_rng(0)
    loose = [displace_outside(atoms, 0, 2.0, 0.4, rng) for _ in range(20)]
    tight = [displace_outside(atoms, 0, 2.0, 0.4, rng, min_distance=0.7) for _ in range(20)]

    def closest(positions):
        copy = atoms.copy()
        copy.set_positions(positions)
        distances = copy.get_all_distances(mic=True)
        return distances[~np.eye(len(atoms), dtype=bool)].min()

    assert min(closest(p) for p in loose) < 0.7  # without the check, contacts the structure never had
    assert min(closest(p) for p in tight) >= 0.7
