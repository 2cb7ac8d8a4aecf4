"""Random dense packings: melt-like starting structures with no crystalline order put in by hand."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

AMU_PER_CM3_TO_G = 1.66053906660  # 1 amu/Å^3 = 1.6605 g/cm^3


def cubic_cell_length(composition: dict[str, int], formula_units: int, density: float) -> float:
    """Edge (Å) of the cubic cell holding ``formula_units`` of ``composition`` at ``density`` (g/cm^3)."""
    mass = formula_units * sum(atomic_masses[atomic_numbers[el]] * n for el, n in composition.items())
    return float((mass * AMU_PER_CM3_TO_G / density) ** (1.0 / 3.0))


def random_packing(
    composition: dict[str, int],
    formula_units: int,
    density: float,
    min_distance: float,
    seed: int,
    max_attempts: int = 2000,
) -> Atoms:
    """Place atoms uniformly at random in a cubic periodic cell, each at least ``min_distance`` Å apart.

    :param composition: atoms per formula unit, e.g. ``{'Si': 1, 'O': 2}``.
    :param density: target mass density in g/cm^3 (liquid SiO2 near 2.2; high-pressure melt higher).
    :raises ValueError: on bad arguments, or when the atoms cannot be placed (density too high for
        the minimum distance).
    """
    if formula_units < 1:
        raise ValueError(f'formula_units must be >= 1, got {formula_units}')
    if density <= 0 or min_distance <= 0:
        raise ValueError('density and min_distance must be positive')
    unknown = [el for el in composition if atomic_numbers.get(el, 0) == 0]  # 0: ASE's dummy atom 'X'
    counts = composition.values()
    if unknown or not composition or any(not isinstance(n, (int, np.integer)) or n < 1 for n in counts):
        raise ValueError(f'composition must map element symbols to positive counts, got {composition}')
    length = cubic_cell_length(composition, formula_units, density)
    rng = np.random.default_rng(seed)
    symbols = [el for el, n in composition.items() for _ in range(n * formula_units)]
    rng.shuffle(symbols)
    positions = np.empty((0, 3))
    for symbol in symbols:
        for _ in range(max_attempts):
            trial = rng.random(3) * length
            delta = positions - trial
            delta -= length * np.round(delta / length)  # minimum image in a cubic cell
            if len(positions) == 0 or np.min(np.linalg.norm(delta, axis=1)) >= min_distance:
                positions = np.vstack([positions, trial])
                break
        else:
            raise ValueError(
                f'could not place {symbol} after {max_attempts} attempts: lower the density ({density} g/cm^3) '
                f'or min_distance ({min_distance} Å)'
            )
    return Atoms(symbols=symbols, positions=positions, cell=[length] * 3, pbc=True)
