"""Population bookkeeping of the evolutionary search: offspring of a generation, fitness ranking, duplicates.

Plain functions; the work chain (:mod:`aiida_liqcryst.workflows.evo_search`) calls them inside calcfunctions.
Fitness is the enthalpy per atom (eV/atom), lower is better.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from aiida_liqcryst.evolution import operators

SYMPRECS = (0.01, 0.1, 0.2)  # Å: spglib tolerances of the reported space groups

# Defaults of the `variation` settings (validated by check_variation_settings).
VARIATION_DEFAULTS = {
    'volume_factor': 1.0,  # pyxtal volume estimate multiplier for random crystals
    'distance_ratio': operators.DEFAULT_DISTANCE_RATIO,  # minimum distances: ratio x covalent radius sum
    'strain_sigma': 0.1,
    'permutation_fraction': 0.3,
    'rattle_strength': 0.8,  # Å
    'rattle_probability': 0.4,
    'selection_fraction': 0.6,  # parents come from this best fraction of the pool
    # a relaxed structure with a pair closer than collapse_ratio x covalent radius sum is rejected as collapsed: O-O
    # 1.06, Si-O 1.42, Si-Si 1.78 Å (SevenNet-0 and DeePMD have holes at short O-O: found at 0.92 Å, -130 eV/atom)
    'collapse_ratio': 0.8,
}


def check_variation_settings(settings: Mapping | None) -> dict:
    """The variation settings with defaults filled in. :raises ValueError: for unknown keys or bad values."""
    settings = dict(settings or {})
    unknown = set(settings) - set(VARIATION_DEFAULTS)
    if unknown:
        raise ValueError(f'variation: unknown key(s) {sorted(unknown)}; allowed: {sorted(VARIATION_DEFAULTS)}')
    out = {**VARIATION_DEFAULTS, **settings}
    for key, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ValueError(f'variation: {key!r} must be a positive number, got {value!r}')
        out[key] = float(value)
    for key in ('selection_fraction', 'rattle_probability', 'permutation_fraction'):
        if out[key] > 1:
            raise ValueError(f'variation: {key!r} must be <= 1, got {out[key]}')
    return out


def check_search_parameters(composition, formula_units, population_size, fractions) -> dict:
    """Validate the core search inputs together; returns them normalised.

    :raises ValueError: population below 2, bad composition (unknown element, non-positive count), bad formula
        unit range or fractions.
    """
    if isinstance(population_size, bool) or not isinstance(population_size, (int, np.integer)) or population_size < 2:
        raise ValueError(f'population_size must be an integer >= 2 (parents for heredity), got {population_size!r}')
    return {
        'composition': operators.check_composition(composition),
        'formula_units': operators.check_formula_units(formula_units),
        'population_size': int(population_size),
        'fractions': operators.check_fractions(fractions),
    }


def operator_counts(size: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """How many children of each kind a generation of ``size`` gets (largest remainders; the total is ``size``)."""
    raw = {k: size * fractions[k] for k in ('heredity', 'mutation', 'random')}
    counts = {k: int(math.floor(v)) for k, v in raw.items()}
    for key in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[: size - sum(counts.values())]:
        counts[key] += 1
    return counts


def rank_weights(n: int) -> np.ndarray:
    """Linear ranking selection probabilities of ``n`` parents sorted best first (best ``n`` times the worst)."""
    weights = np.arange(n, 0, -1, dtype=float)
    return weights / weights.sum()


def make_offspring(
    parents: Sequence[tuple[str, object, float]],
    size: int,
    composition: Mapping[str, int],
    formula_units: tuple[int, int],
    fractions: Mapping[str, float],
    rng: np.random.Generator,
    settings: Mapping | None = None,
) -> list[dict]:
    """The candidates of one generation.

    :param parents: ``(key, atoms, enthalpy_per_atom)`` of the current pool (unique structures); empty for the first
        generation, which is all random crystals.
    :returns: ``size`` dicts ``{atoms, operator, parents, info}``. Heredity pairs two parents of the same number of
        atoms (else it becomes a mutation); an operator that fails gives way to a random newcomer, which is what
        ``operator`` then says (``info['fallback_from']`` the operator that failed).
    """
    settings = check_variation_settings(settings)
    composition = operators.check_composition(composition)
    blmin = operators.closest_distances(list(composition), settings['distance_ratio'])
    ranked = sorted(parents, key=lambda p: p[2])
    if ranked:
        ranked = ranked[: max(2, int(math.ceil(settings['selection_fraction'] * len(ranked))))]
        plan = operator_counts(size, fractions)
    else:
        plan = {'heredity': 0, 'mutation': 0, 'random': size}
    weights = rank_weights(len(ranked)) if ranked else None
    kinds = ['heredity'] * plan['heredity'] + ['mutation'] * plan['mutation'] + ['random'] * plan['random']

    def pick(candidates=None):
        if candidates is None:
            return int(rng.choice(len(ranked), p=weights))
        w = weights[candidates] / weights[candidates].sum()
        return int(candidates[int(rng.choice(len(candidates), p=w))])

    children = []
    for kind in kinds:
        child, info, used = None, {}, []
        if kind == 'heredity':
            first = pick()
            same = np.array([k for k, p in enumerate(ranked) if k != first and len(p[1]) == len(ranked[first][1])])
            if same.size:
                second = pick(same)
                used = [ranked[first][0], ranked[second][0]]
                child, info = operators.cut_and_splice(ranked[first][1], ranked[second][1], rng, blmin)
            else:
                kind = 'mutation'
                info = {'heredity_without_partner': True}
        if kind == 'mutation':
            first = pick()
            used = [ranked[first][0]]
            note = info
            child, info = operators.mutate(ranked[first][1], rng, blmin, settings=settings)
            info.update(note)
        if child is None:
            failed = info.get('operator') if kind != 'random' else None
            fu = int(rng.integers(formula_units[0], formula_units[1] + 1))
            child, info = operators.random_crystal(
                composition, fu, rng, volume_factor=settings['volume_factor'], blmin=blmin
            )
            used = []
            if failed:
                info['fallback_from'] = failed
            if child is None:
                raise RuntimeError(
                    f'no random crystal of {fu} x {composition} found with pyxtal: widen the formula-unit range or '
                    'lower variation.distance_ratio'
                )
        children.append({'atoms': child, 'operator': info['operator'], 'parents': used, 'info': info})
    return children


def space_groups(atoms, symprecs: Sequence[float] = SYMPRECS) -> list[dict]:
    """Space group (spglib) at each tolerance: ``[{'symprec': s, 'number': int, 'symbol': str}, ...]`` (number and
    symbol None where spglib finds none)."""
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(wrap=True), atoms.numbers)
    out = []
    for symprec in symprecs:
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
        out.append({
            'symprec': float(symprec),
            'number': None if dataset is None else int(dataset.number),
            'symbol': None if dataset is None else str(dataset.international),
        })
    return out


def space_group_label(groups: Sequence[dict], symprec: float = 0.1) -> str | None:
    """``'P4_2/mnm (136)'`` of the entry of :func:`space_groups` at ``symprec`` (None if missing)."""
    for entry in groups:
        if abs(entry['symprec'] - symprec) < 1e-12 and entry['number'] is not None:
            return f'{entry["symbol"]} ({entry["number"]})'
    return None


def structure_matcher():
    """The pymatgen StructureMatcher used for duplicates: default tolerances, primitive cells, scaled volumes."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=True, scale=True, attempt_supercell=True)


def remove_duplicates(
    entries: Sequence[tuple[str, object, float]], enthalpy_tolerance: float = 0.05, known_unique: Sequence[str] = ()
) -> tuple[list[str], dict[str, str]]:
    """Unique structures of ``entries`` = ``(key, atoms, enthalpy_per_atom)``, lowest enthalpy kept per group.

    Two structures are duplicates when their enthalpies per atom differ by less than ``enthalpy_tolerance`` (eV/atom,
    a cheap prefilter) and pymatgen's StructureMatcher (:func:`structure_matcher`) matches them (symmetry-equivalent
    cells, supercells, rotations and permutations of equivalent sites included).

    ``known_unique``: keys already known to be pairwise distinct (the pool of earlier generations): pairs of
    them are not compared again, so a generation costs (new × all) comparisons, not (all × all).

    :returns: ``(unique keys best first, {duplicate key: key of the structure it duplicates})``.
    """
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = structure_matcher()
    known = set(known_unique)
    ordered = sorted(entries, key=lambda e: (e[2], e[0]))
    kept: list[tuple[str, object, float]] = []
    duplicates = {}
    for key, atoms, enthalpy in ordered:
        structure = AseAtomsAdaptor.get_structure(atoms)
        match = next(
            (k for k, s, h in kept
             if abs(h - enthalpy) < enthalpy_tolerance and not (key in known and k in known) and matcher.fit(s, structure)),
            None,
        )
        if match is None:
            kept.append((key, structure, enthalpy))
        else:
            duplicates[key] = match
    return [k for k, _, _ in kept], duplicates


def stagnated(best_history: Sequence[float], generations: int, tolerance: float) -> bool:
    """True when the best enthalpy (cumulative, per generation) has not dropped by more than ``tolerance`` over the
    last ``generations`` generations. ``generations`` <= 0 switches the rule off."""
    if generations <= 0 or len(best_history) <= generations:
        return False
    return best_history[-generations - 1] - best_history[-1] <= tolerance
