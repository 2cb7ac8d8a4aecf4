"""Variation operators of the evolutionary search: random symmetric crystals, heredity and mutations.

Plain functions on ``ase.Atoms`` with an explicit ``numpy.random.Generator``: the same generator state gives the
same structure. Every operator keeps the composition of its parents (checked in the tests) and returns ``None``
when it cannot make a child that passes the distance check in ``max_tries`` attempts.

The operators follow the USPEX / ase.ga ones (Lyakhov et al., Comput. Phys. Commun. 184, 1172 (2013); Vilhelmsen &
Hammer, J. Chem. Phys. 141, 044711 (2014)). ``ase.ga`` itself has left ASE (3.29 keeps only import stubs; the code
lives in the separate ``ase-ga`` package, not among the pinned dependencies), so they are written here, with the
same parameters: ``closest_distances`` is ase.ga's ``closest_distances_generator`` (a ratio of the sum of covalent
radii), ``cut_and_splice`` its ``CutAndSplicePairing`` (a random plane in fractional coordinates, cell averaged with a
random weight, composition repaired by depth), ``strain_mutation`` its ``StrainMutation`` (symmetric Gaussian strain at
constant volume), ``permutation_mutation`` and ``rattle_mutation`` its ``PermutationMutation`` / ``RattleMutation``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

DEFAULT_DISTANCE_RATIO = 0.7  # ase.ga's usual ratio of the covalent-radius sum
MUTATIONS = ('strain', 'permutation', 'rattle')


def check_composition(composition: Mapping[str, int]) -> dict[str, int]:
    """The composition as ``{element: positive int}`` (e.g. ``{'Si': 1, 'O': 2}``: atoms per formula unit).

    :raises ValueError: for an empty composition, an unknown chemical symbol or a count that is not a positive integer.
    """
    from ase.data import chemical_symbols

    if not isinstance(composition, Mapping) or not composition:
        raise ValueError(f'composition must be a non-empty {{element: count}} mapping, got {composition!r}')
    out = {}
    for element, count in composition.items():
        if element not in chemical_symbols[1:]:
            raise ValueError(f'composition: unknown element {element!r}')
        if isinstance(count, bool) or not isinstance(count, (int, np.integer, float)) or count != int(count) or count < 1:
            raise ValueError(f'composition: the count of {element} must be a positive integer, got {count!r}')
        out[element] = int(count)
    return out


def check_formula_units(formula_units: Sequence[int]) -> tuple[int, int]:
    """``(min, max)`` formula units per cell. :raises ValueError: unless 1 <= min <= max, whole numbers."""
    if not isinstance(formula_units, (list, tuple)) or len(formula_units) != 2:
        raise ValueError(f'formula_units must be [min, max], got {formula_units!r}')
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) for n in formula_units):
        raise ValueError(f'formula_units must be whole numbers, got {formula_units!r}')
    low, high = (int(n) for n in formula_units)
    if not 1 <= low <= high:
        raise ValueError(f'formula_units must satisfy 1 <= min <= max, got {formula_units!r}')
    return low, high


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    """Fractions of each generation made by ``heredity``, ``mutation`` and ``random`` newcomers (sum 1).

    :raises ValueError: for missing or unknown keys, negative values or a sum other than 1.
    """
    keys = ('heredity', 'mutation', 'random')
    if not isinstance(fractions, Mapping) or set(fractions) != set(keys):
        raise ValueError(f'fractions must give exactly {list(keys)}, got {fractions!r}')
    out = {}
    for key in keys:
        value = fractions[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f'fractions: {key!r} must be a number >= 0, got {value!r}')
        out[key] = float(value)
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise ValueError(f'fractions must sum to 1, got {sum(out.values())} ({out})')
    return out


def closest_distances(elements: Sequence[str], ratio: float = DEFAULT_DISTANCE_RATIO) -> dict[tuple[int, int], float]:
    """Smallest allowed distance (Å) per pair of atomic numbers: ``ratio`` × the sum of covalent radii.

    The convention of ase.ga's ``closest_distances_generator`` (both orders of each pair are keys).
    """
    from ase.data import atomic_numbers, covalent_radii

    if not 0 < ratio <= 2:
        raise ValueError(f'distance ratio must be in (0, 2], got {ratio}')
    numbers = sorted({atomic_numbers[e] for e in elements})
    return {(a, b): ratio * float(covalent_radii[a] + covalent_radii[b]) for a in numbers for b in numbers}


def too_close(atoms, blmin: Mapping[tuple[int, int], float]) -> bool:
    """True when two atoms (periodic images included) are closer than ``blmin`` of their pair."""
    from ase.neighborlist import neighbor_list

    if len(atoms) == 0:
        return False
    cutoff = max(blmin.values())
    i, j, d = neighbor_list('ijd', atoms, cutoff, self_interaction=False)
    if i.size == 0:
        return False
    numbers = atoms.numbers
    limits = np.array([blmin[(int(numbers[a]), int(numbers[b]))] for a, b in zip(i, j)])
    return bool(np.any(d < limits))


def closest_contact(atoms, blmin: Mapping[tuple[int, int], float]) -> dict | None:
    """The pair with the smallest distance / ``blmin`` ratio (periodic images included), or None if no pair is
    within ``max(blmin)``: ``{'pair': 'O-O', 'distance': Å, 'limit': Å, 'ratio': distance / limit}``."""
    from ase.data import chemical_symbols
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list('ijd', atoms, max(blmin.values()), self_interaction=False)
    if i.size == 0:
        return None
    numbers = atoms.numbers
    limits = np.array([blmin[(int(numbers[a]), int(numbers[b]))] for a, b in zip(i, j)])
    k = int(np.argmin(d / limits))
    pair = '-'.join(sorted((chemical_symbols[numbers[i[k]]], chemical_symbols[numbers[j[k]]])))
    return {'pair': pair, 'distance': float(d[k]), 'limit': float(limits[k]), 'ratio': float(d[k] / limits[k])}


def _sane_cell(atoms, min_length: float = 1.0, min_angle: float = 30.0) -> bool:
    lengths_angles = atoms.cell.cellpar()
    lengths, angles = lengths_angles[:3], lengths_angles[3:]
    return bool(np.all(lengths > min_length) and np.all(angles > min_angle) and np.all(angles < 180 - min_angle))


def _finish(atoms):
    """Niggli-reduced cell, atoms wrapped into it, no calculator or constraints: a clean child."""
    from ase.build import niggli_reduce

    atoms = atoms.copy()
    atoms.calc = None
    atoms.set_constraint()
    atoms.pbc = True
    niggli_reduce(atoms)
    atoms.wrap()
    return atoms


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def random_crystal(
    composition: Mapping[str, int],
    formula_units: int,
    rng: np.random.Generator,
    volume_factor: float = 1.0,
    blmin: Mapping[tuple[int, int], float] | None = None,
    space_groups: Sequence[int] | None = None,
    max_tries: int = 20,
):
    """A random crystal of ``formula_units`` × ``composition`` in a random space group (pyxtal).

    The space group is drawn uniformly from ``space_groups`` (default 2–230) among those whose Wyckoff positions can
    hold the atom counts; pyxtal places the atoms with the ``blmin`` distances as its tolerance matrix and a volume
    of ``volume_factor`` × its estimate from atomic radii. The conventional cell is returned (for rhombohedral groups
    the hexagonal cell of three times ``formula_units`` is avoided: the primitive cell is returned there).

    :returns: ``(atoms, info)`` with info ``space_group`` (the one asked of pyxtal), or ``(None, info)`` after
        ``max_tries`` failures.
    """
    from pyxtal import pyxtal
    from pyxtal.symmetry import Group
    from pyxtal.tolerance import Tol_matrix

    composition = check_composition(composition)
    species = list(composition)
    counts = [composition[e] * int(formula_units) for e in species]
    blmin = blmin or closest_distances(species)
    from ase.data import chemical_symbols

    tolerances = Tol_matrix(*[(chemical_symbols[a], chemical_symbols[b], d) for (a, b), d in blmin.items() if a <= b])
    groups = list(space_groups) if space_groups else list(range(2, 231))
    info = {'operator': 'random', 'formula_units': int(formula_units)}
    for _ in range(max_tries):
        group = int(groups[int(rng.integers(len(groups)))])
        if not Group(group).check_compatible(counts)[0]:
            continue
        crystal = pyxtal()
        try:
            crystal.from_random(
                3, group, species, counts, factor=volume_factor, tm=tolerances, random_state=_seed(rng), max_count=20
            )
        except Exception:  # noqa: BLE001 - pyxtal raises several kinds for a group it cannot fill
            continue
        if not crystal.valid:
            continue
        atoms = crystal.to_ase()
        if Counter(atoms.get_chemical_symbols()) != Counter({e: c for e, c in zip(species, counts)}):
            # a rhombohedral group gives the hexagonal cell: take the primitive one (the asked size)
            from pymatgen.io.ase import AseAtomsAdaptor

            atoms = AseAtomsAdaptor.get_atoms(crystal.to_pymatgen().get_primitive_structure())
            if len(atoms) != sum(counts):
                continue
        atoms = _finish(atoms)
        if not _sane_cell(atoms) or too_close(atoms, blmin):
            continue
        info['space_group'] = group
        return atoms, info
    return None, info


def cut_and_splice(parent_a, parent_b, rng: np.random.Generator, blmin, max_tries: int = 50):
    """Heredity: a slab of ``parent_a`` and the complementary slab of ``parent_b`` in an averaged cell.

    The parents must have the same atoms (same composition and size). ``parent_b`` is shifted by a random
    translation; a plane at fractional coordinate ``cut`` (random, 0.3–0.7) along a random lattice vector
    separates A's side (below) from B's side (above); the child's cell is ``w·cell_A + (1−w)·cell_B`` (w random,
    0.3–0.7) with fractional coordinates kept. Per element the atoms deepest inside their parent's side are
    taken, as many as the parent composition has: the composition is exact by construction.

    :returns: ``(child, info)`` with info operator, axis, cut, weight; ``(None, info)`` when no attempt passes
        the distance check.
    """
    from ase import Atoms

    if sorted(parent_a.get_chemical_symbols()) != sorted(parent_b.get_chemical_symbols()):
        raise ValueError(
            f'cut_and_splice needs parents with the same atoms, got {parent_a.get_chemical_formula()} '
            f'and {parent_b.get_chemical_formula()}'
        )
    target = Counter(parent_a.get_chemical_symbols())
    info = {'operator': 'heredity'}
    fa = parent_a.get_scaled_positions(wrap=True)
    sa = np.array(parent_a.get_chemical_symbols())
    sb = np.array(parent_b.get_chemical_symbols())
    for _ in range(max_tries):
        fb = (parent_b.get_scaled_positions(wrap=True) + rng.random(3)) % 1.0
        axis = int(rng.integers(3))
        cut = float(rng.uniform(0.3, 0.7))
        weight = float(rng.uniform(0.3, 0.7))
        cell = weight * parent_a.cell.array + (1 - weight) * parent_b.cell.array
        depth_a = cut - fa[:, axis]  # > 0 on A's side
        depth_b = fb[:, axis] - cut  # > 0 on B's side
        symbols, positions, from_a = [], [], 0
        for element, count in sorted(target.items()):
            pool = [(depth_a[k], 'a', k) for k in np.flatnonzero(sa == element)]
            pool += [(depth_b[k], 'b', k) for k in np.flatnonzero(sb == element)]
            pool.sort(key=lambda t: (-t[0], t[1], t[2]))
            for _, source, k in pool[:count]:
                symbols.append(element)
                positions.append(fa[k] if source == 'a' else fb[k])
                from_a += source == 'a'
        if from_a in (0, len(symbols)):  # a copy of one parent
            continue
        child = Atoms(symbols=symbols, scaled_positions=np.array(positions), cell=cell, pbc=True)
        if not _sane_cell(child):
            continue
        child = _finish(child)
        if too_close(child, blmin):
            continue
        info.update(axis=axis, cut=round(cut, 4), weight=round(weight, 4), atoms_from_first=int(from_a))
        return child, info
    return None, info


def strain_mutation(atoms, rng: np.random.Generator, blmin, sigma: float = 0.1, max_tries: int = 50):
    """Lattice mutation: cell × (1 + ε), ε symmetric with Gaussian components of width ``sigma``, volume kept."""
    info = {'operator': 'strain'}
    volume = atoms.get_volume()
    for _ in range(max_tries):
        eps = rng.normal(0.0, sigma, (3, 3))
        eps = 0.5 * (eps + eps.T)
        child = atoms.copy()
        cell = child.cell.array @ (np.eye(3) + eps)
        if np.linalg.det(cell) <= 0:
            continue
        cell *= (volume / abs(np.linalg.det(cell))) ** (1.0 / 3.0)
        child.set_cell(cell, scale_atoms=True)
        if not _sane_cell(child):
            continue
        child = _finish(child)
        if too_close(child, blmin):
            continue
        info['max_strain'] = round(float(np.abs(eps).max()), 4)
        return child, info
    return None, info


def permutation_mutation(atoms, rng: np.random.Generator, blmin, fraction: float = 0.3, max_tries: int = 50):
    """Swap the positions of atoms of different elements (``fraction`` of the minority count, at least one pair)."""
    info = {'operator': 'permutation'}
    symbols = np.array(atoms.get_chemical_symbols())
    elements = sorted(set(symbols))
    if len(elements) < 2:
        return None, info
    for _ in range(max_tries):
        a, b = rng.choice(elements, size=2, replace=False)
        ia, ib = np.flatnonzero(symbols == a), np.flatnonzero(symbols == b)
        n = max(1, int(round(fraction * min(ia.size, ib.size))))
        swap_a = rng.choice(ia, size=n, replace=False)
        swap_b = rng.choice(ib, size=n, replace=False)
        child = atoms.copy()
        positions = child.positions.copy()
        positions[swap_a], positions[swap_b] = atoms.positions[swap_b], atoms.positions[swap_a]
        child.positions = positions
        child = _finish(child)
        if too_close(child, blmin):
            continue
        info['swaps'] = int(n)
        return child, info
    return None, info


def rattle_mutation(atoms, rng: np.random.Generator, blmin, strength: float = 0.8, probability: float = 0.4,
                    max_tries: int = 50):
    """Move each atom with ``probability`` by a random vector of length up to ``strength`` Å (at least one atom)."""
    info = {'operator': 'rattle'}
    for _ in range(max_tries):
        moved = rng.random(len(atoms)) < probability
        if not moved.any():
            moved[int(rng.integers(len(atoms)))] = True
        direction = rng.normal(size=(len(atoms), 3))
        direction /= np.linalg.norm(direction, axis=1)[:, None]
        length = strength * rng.random(len(atoms)) ** (1.0 / 3.0)  # uniform in the ball
        child = atoms.copy()
        child.positions = atoms.positions + moved[:, None] * direction * length[:, None]
        child = _finish(child)
        if too_close(child, blmin):
            continue
        info['moved'] = int(moved.sum())
        return child, info
    return None, info


def mutate(atoms, rng: np.random.Generator, blmin, kind: str | None = None, settings: Mapping | None = None):
    """One mutation of ``atoms``: ``kind`` in :data:`MUTATIONS`, or drawn uniformly when None."""
    settings = dict(settings or {})
    kind = kind or MUTATIONS[int(rng.integers(len(MUTATIONS)))]
    if kind == 'strain':
        return strain_mutation(atoms, rng, blmin, sigma=settings.get('strain_sigma', 0.1))
    if kind == 'permutation':
        child, info = permutation_mutation(atoms, rng, blmin, fraction=settings.get('permutation_fraction', 0.3))
        if child is None and len(set(atoms.get_chemical_symbols())) < 2:  # one element: nothing to permute
            return rattle_mutation(atoms, rng, blmin)
        return child, info
    if kind == 'rattle':
        return rattle_mutation(atoms, rng, blmin, strength=settings.get('rattle_strength', 0.8),
                               probability=settings.get('rattle_probability', 0.4))
    raise ValueError(f'unknown mutation {kind!r}; choose one of {MUTATIONS}')
