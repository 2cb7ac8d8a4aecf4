"""Plain-Python parts of the evolutionary search: operators, duplicates, space groups, metrics, RDF comparison."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from aiida_liqcryst.evolution import analysis, operators, population
from aiida_liqcryst.structures import polymorphs

SIO2 = {'Si': 1, 'O': 2}
FRACTIONS = {'heredity': 0.5, 'mutation': 0.3, 'random': 0.2}


def _formula(atoms):
    return Counter(atoms.get_chemical_symbols())


@pytest.fixture(scope='module')
def parents():
    """Two stishovite-like and two quartz cells of 6 and 9 atoms: real crystals as parents."""
    stishovite = polymorphs.get_atoms('stishovite', primitive=True)  # 6 atoms
    quartz = polymorphs.get_atoms('alpha_quartz', primitive=True)  # 9 atoms
    rng = np.random.default_rng(5)
    rattled = stishovite.copy()
    rattled.positions += rng.normal(0, 0.05, rattled.positions.shape)
    return [('stishovite', stishovite, -9.0), ('rattled', rattled, -8.9), ('quartz', quartz, -9.1)]


def test_random_crystals_have_the_formula_and_are_reproducible():
    blmin = operators.closest_distances(['Si', 'O'])
    for formula_units in (1, 2, 3, 4):
        atoms, info = operators.random_crystal(SIO2, formula_units, np.random.default_rng(formula_units), blmin=blmin)
        assert atoms is not None, info
        assert _formula(atoms) == Counter({'Si': formula_units, 'O': 2 * formula_units})
        assert all(atoms.pbc) and atoms.get_volume() > 0
        assert not operators.too_close(atoms, blmin)
        assert 2 <= info['space_group'] <= 230
    first, _ = operators.random_crystal(SIO2, 3, np.random.default_rng(42), blmin=blmin)
    again, _ = operators.random_crystal(SIO2, 3, np.random.default_rng(42), blmin=blmin)
    np.testing.assert_allclose(first.cell.array, again.cell.array)
    np.testing.assert_allclose(first.positions, again.positions)
    assert first.get_chemical_symbols() == again.get_chemical_symbols()


def test_operators_keep_the_composition(parents):
    blmin = operators.closest_distances(['Si', 'O'])
    rng = np.random.default_rng(0)
    stishovite, rattled = parents[0][1], parents[1][1]
    for _ in range(5):
        child, info = operators.cut_and_splice(stishovite, rattled, rng, blmin)
        assert child is not None, info
        assert _formula(child) == _formula(stishovite)
        assert 0 < info['atoms_from_first'] < len(stishovite)  # a real mix of both parents
        assert not operators.too_close(child, blmin)
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = StructureMatcher(ltol=0.01, stol=0.01, angle_tol=0.5, scale=False)  # tight: any real change counts
    for kind in operators.MUTATIONS:
        child, info = operators.mutate(stishovite, rng, blmin, kind=kind)
        assert child is not None, info
        assert info['operator'] == kind
        assert _formula(child) == _formula(stishovite)
        # a changed structure, not the parent in another setting (the Niggli cell)
        assert not matcher.fit(AseAtomsAdaptor.get_structure(stishovite), AseAtomsAdaptor.get_structure(child)), kind
    strained, _ = operators.strain_mutation(stishovite, rng, blmin)
    assert strained.get_volume() == pytest.approx(stishovite.get_volume(), rel=1e-9)  # strain at constant volume
    with pytest.raises(ValueError, match='same atoms'):
        operators.cut_and_splice(stishovite, parents[2][1], rng, blmin)


def test_a_generation_of_offspring(parents):
    rng = np.random.default_rng(3)
    children = population.make_offspring(parents, 10, SIO2, (2, 3), FRACTIONS, rng, {'selection_fraction': 1.0})
    assert len(children) == 10
    counts = Counter(c['operator'] for c in children)
    # 5 heredity planned: a first parent without a partner of its size (quartz) gets a mutation instead, a failed
    # operator gives way to a random newcomer
    without_partner = sum(bool(c['info'].get('heredity_without_partner')) for c in children)
    fallback = sum(c['info'].get('fallback_from') == 'heredity' for c in children)
    assert counts['heredity'] >= 1
    assert counts['heredity'] + without_partner + fallback == 5
    assert sum(counts[k] for k in operators.MUTATIONS) >= 1
    keys = {p[0] for p in parents}
    for child in children:
        atoms = child['atoms']
        n = len(atoms) // 3
        assert _formula(atoms) == Counter({'Si': n, 'O': 2 * n})
        assert set(child['parents']) <= keys
        if child['operator'] == 'heredity':
            # only parents of the same size are paired: the two stishovite cells
            assert set(child['parents']) <= {'stishovite', 'rattled'} and len(child['parents']) == 2
    first = population.make_offspring([], 4, SIO2, (1, 2), FRACTIONS, np.random.default_rng(9))
    assert {c['operator'] for c in first} == {'random'}
    assert population.operator_counts(7, FRACTIONS) == {'heredity': 4, 'mutation': 2, 'random': 1}  # largest remainders
    assert sum(population.operator_counts(11, FRACTIONS).values()) == 11


def test_duplicates_of_symmetry_equivalent_cells_are_removed():
    quartz = polymorphs.get_atoms('alpha_quartz', primitive=True)
    copy = quartz.repeat((1, 2, 1))  # a supercell ...
    copy.rotate(37, 'z', rotate_cell=True)  # ... rotated ...
    copy = copy[np.random.default_rng(1).permutation(len(copy))]  # ... with the atoms in another order
    copy.translate([0.3, 0.1, 0.2])
    copy.wrap()
    stishovite = polymorphs.get_atoms('stishovite', primitive=True)
    entries = [('copy', copy, -9.01), ('quartz', quartz, -9.02), ('stishovite', stishovite, -9.015)]
    unique, duplicates = population.remove_duplicates(entries)
    assert unique == ['quartz', 'stishovite']  # ranked by enthalpy, the lower of the pair kept
    assert duplicates == {'copy': 'quartz'}
    # the enthalpy prefilter: the same structure far apart in enthalpy is not merged
    unique, duplicates = population.remove_duplicates([('a', quartz, -9.0), ('b', copy, -8.0)], enthalpy_tolerance=0.05)
    assert unique == ['a', 'b'] and not duplicates


def test_space_groups_and_coordination_of_known_crystals():
    for name in ('stishovite', 'alpha_quartz', 'coesite'):
        atoms = polymorphs.get_atoms(name)
        groups = population.space_groups(atoms)
        assert [g['symprec'] for g in groups] == list(population.SYMPRECS)
        assert groups[0]['number'] == polymorphs.POLYMORPHS[name].space_group
        assert population.space_group_label(groups).endswith(f'({polymorphs.POLYMORPHS[name].space_group})')
        assert analysis.si_coordination(atoms) == pytest.approx(polymorphs.POLYMORPHS[name].si_coordination)


def test_closest_polymorph_by_rdf():
    stishovite = polymorphs.get_atoms('stishovite', primitive=True).repeat((1, 1, 2))
    stishovite.set_cell(stishovite.cell * 1.03, scale_atoms=True)  # a few % larger, as after a relaxation
    result = analysis.compare_with_polymorphs(stishovite, names=['stishovite', 'alpha_quartz', 'coesite'])
    assert result['closest'] == 'stishovite'
    assert result['similarity'] > 0.95
    assert result['similarities']['alpha_quartz'] < result['similarity'] - 0.1
    # the Si-O peak of the found structure sits at the stretched Si-O bond (1.76-1.81 Å x 1.03)
    r, g = result['r'], result['rdfs']['Si-O']
    assert 1.75 < r[np.argmax(g)] < 1.95


def test_relabel_metrics_by_construction():
    rng = np.random.default_rng(0)
    reference = np.linspace(-9.2, -7.0, 12)
    noise = rng.normal(0, 0.01, reference.size)
    potential = reference + 0.02 + noise  # an offset of 20 meV/atom and 10 meV/atom scatter
    enthalpy = potential + 0.5
    metrics = analysis.relabel_metrics(potential, reference, enthalpy, window=1.0)
    assert metrics['all']['n'] == 12 and metrics['all']['pearson_r'] > 0.99
    assert metrics['mean_difference'] == pytest.approx(0.02 + noise.mean())
    assert metrics['rmse_aligned'] == pytest.approx(noise.std())
    inside = enthalpy - enthalpy.min() <= 1.0
    assert metrics['n_window'] == inside.sum() < 12
    assert metrics['window']['rmse'] == pytest.approx(np.sqrt(np.mean((potential - reference)[inside] ** 2)))


def test_relabel_plot_is_a_png(tmp_path):
    path = analysis.relabel_plot(tmp_path / 'relabel.png', [-9.0, -8.5, -8.0], [-9.1, -8.4, -8.05], highlight=[True, False, False])
    content = path.read_bytes()
    assert content[:8] == b'\x89PNG\r\n\x1a\n' and len(content) > 5000


@pytest.mark.parametrize(('kwargs', 'message'), [
    ({'population_size': 1}, 'population_size must be an integer >= 2'),
    ({'composition': {'Si': 1, 'Xx': 2}}, "unknown element 'Xx'"),
    ({'composition': {'Si': 1, 'O': 0}}, 'count of O must be a positive integer'),
    ({'composition': {}}, 'non-empty'),
    ({'formula_units': [3, 2]}, '1 <= min <= max'),
    ({'fractions': {'heredity': 0.5, 'mutation': 0.5, 'random': 0.5}}, 'sum to 1'),
    ({'fractions': {'heredity': 1.0}}, 'exactly'),
])
def test_bad_search_parameters_are_rejected(kwargs, message):
    arguments = {'composition': SIO2, 'formula_units': [1, 2], 'population_size': 4, 'fractions': FRACTIONS, **kwargs}
    with pytest.raises(ValueError, match=message):
        population.check_search_parameters(**arguments)


def test_bad_variation_settings_and_stagnation_rule():
    with pytest.raises(ValueError, match='unknown key'):
        population.check_variation_settings({'mutation_rate': 0.1})
    with pytest.raises(ValueError, match='selection_fraction'):
        population.check_variation_settings({'selection_fraction': 1.5})
    assert population.check_variation_settings({'volume_factor': 2})['volume_factor'] == 2.0
    assert not population.stagnated([-1.0, -1.5], 2, 0.001)  # too short to tell
    assert population.stagnated([-1.0, -1.5, -1.5, -1.5005], 2, 0.001)
    assert not population.stagnated([-1.0, -1.5, -1.5, -1.6], 2, 0.001)
    assert not population.stagnated([-1.0, -1.0, -1.0, -1.0], 0, 0.001)  # rule off


def test_known_unique_pairs_are_not_compared_again():
    quartz = polymorphs.get_atoms('alpha_quartz', primitive=True)
    copy = quartz.repeat((2, 1, 1))
    # declared distinct (as pool members are after their own generation): both kept, no comparison between them
    unique, duplicates = population.remove_duplicates([('a', quartz, -9.0), ('b', copy, -9.0)], known_unique=['a', 'b'])
    assert unique == ['a', 'b'] and not duplicates
    # a new structure is still compared with the known ones
    unique, duplicates = population.remove_duplicates(
        [('a', quartz, -9.0), ('new', copy, -9.01)], known_unique=['a']
    )
    assert unique == ['new'] and duplicates == {'a': 'new'}


def test_offspring_are_reproducible(parents):
    def generation(seed):
        return population.make_offspring(parents, 6, SIO2, (1, 2), FRACTIONS, np.random.default_rng([seed, 1]))

    first, again, other = generation(4), generation(4), generation(5)
    assert [c['info'] for c in first] == [c['info'] for c in again]
    for a, b in zip(first, again):
        np.testing.assert_allclose(a['atoms'].positions, b['atoms'].positions)
        np.testing.assert_allclose(a['atoms'].cell.array, b['atoms'].cell.array)
    assert [c['info'] for c in first] != [c['info'] for c in other]


def test_closest_contact_flags_collapsed_cells():
    stishovite = polymorphs.get_atoms('stishovite', primitive=True)
    blmin = operators.closest_distances(['Si', 'O'], ratio=0.8)
    contact = operators.closest_contact(stishovite, blmin)
    # the shortest Si-O bond of stishovite (1.76 Å) against 0.8 x (1.11 + 0.66) Å
    assert contact['pair'] == 'O-Si' and contact['distance'] == pytest.approx(1.757, abs=0.01)
    assert contact['limit'] == pytest.approx(0.8 * 1.77, abs=0.01) and contact['ratio'] > 1
    squeezed = stishovite.copy()
    squeezed.set_cell(squeezed.cell * 0.75, scale_atoms=True)  # Si-O 1.32 Å: collapsed
    assert operators.closest_contact(squeezed, blmin)['ratio'] < 1
    assert operators.too_close(squeezed, blmin) and not operators.too_close(stishovite, blmin)
