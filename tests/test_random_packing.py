"""Random dense packings (melt-like starting structures) and the ``random_melt`` calcfunction."""

import numpy as np
import pytest
from ase.data import atomic_masses, atomic_numbers

from aiida_liqcryst.structures.random_packing import cubic_cell_length, random_packing

SIO2 = {'Si': 1, 'O': 2}
AMU_IN_G = 1.66053906660e-24  # g
A3_IN_CM3 = 1e-24  # cm^3


def density_g_cm3(atoms) -> float:
    mass_g = sum(atomic_masses[atomic_numbers[s]] for s in atoms.get_chemical_symbols()) * AMU_IN_G
    return mass_g / (atoms.get_volume() * A3_IN_CM3)


@pytest.mark.parametrize(
    ('composition', 'formula_units', 'density', 'min_distance'),
    [(SIO2, 8, 2.2, 1.5), (SIO2, 16, 2.6, 1.5), ({'Si': 1, 'O': 2, 'Na': 1}, 5, 2.4, 1.4)],
)
def test_composition_density_and_distances(composition, formula_units, density, min_distance):
    atoms = random_packing(composition, formula_units, density, min_distance, seed=7)
    symbols = atoms.get_chemical_symbols()
    for element, count in composition.items():
        assert symbols.count(element) == count * formula_units
    assert len(atoms) == formula_units * sum(composition.values())
    assert density_g_cm3(atoms) == pytest.approx(density, rel=1e-6)
    assert all(atoms.pbc)
    lengths, angles = atoms.cell.cellpar()[:3], atoms.cell.cellpar()[3:]
    assert np.allclose(lengths, lengths[0]) and np.allclose(angles, 90.0)
    assert lengths[0] == pytest.approx(cubic_cell_length(composition, formula_units, density))
    # every pair, through the periodic boundaries, at least min_distance apart
    distances = atoms.get_all_distances(mic=True)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() >= min_distance - 1e-9
    scaled = atoms.get_scaled_positions(wrap=False)
    assert np.all((scaled >= 0) & (scaled < 1))


def test_min_distance_is_respected_across_the_boundary():
    # dense enough that a check without the minimum image would let atoms overlap across the faces
    for seed in range(5):
        atoms = random_packing(SIO2, 8, 2.9, 1.6, seed=seed)
        distances = atoms.get_all_distances(mic=True)
        np.fill_diagonal(distances, np.inf)
        assert distances.min() >= 1.6 - 1e-9


def test_seeded_reproducibility():
    first = random_packing(SIO2, 8, 2.6, 1.5, seed=42)
    again = random_packing(SIO2, 8, 2.6, 1.5, seed=42)
    other = random_packing(SIO2, 8, 2.6, 1.5, seed=43)
    assert np.array_equal(first.positions, again.positions)
    assert first.get_chemical_symbols() == again.get_chemical_symbols()
    assert not np.allclose(first.positions, other.positions)


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        ({'composition': {'Si': 1, 'Xq': 2}}, 'composition'),
        ({'composition': {'Si': 1, 'X': 2}}, 'composition'),  # ASE's dummy atom is no element
        ({'composition': {'Si': 1, 'O': 1.5}}, 'composition'),
        ({'composition': {}}, 'composition'),
        ({'composition': {'Si': 1, 'O': 0}}, 'composition'),
        ({'formula_units': 0}, 'formula_units'),
        ({'density': -1.0}, 'density'),
        ({'min_distance': 0.0}, 'min_distance'),
    ],
)
def test_bad_input(kwargs, match):
    arguments = {'composition': SIO2, 'formula_units': 8, 'density': 2.2, 'min_distance': 1.5, 'seed': 0}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        random_packing(**arguments)


def test_too_dense_is_refused():
    # 2.0 Å spheres cannot fill SiO2 at 8 g/cm^3 (the cell is ~4.2 Å wide for 24 atoms)
    with pytest.raises(ValueError, match='lower the density'):
        random_packing(SIO2, 8, 8.0, 2.0, seed=0, max_attempts=200)


def test_random_melt_provenance(aiida_profile):
    from aiida import orm
    from aiida.common.links import LinkType

    from aiida_liqcryst.calcfunctions import random_melt

    inputs = {
        'composition': orm.Dict(SIO2),
        'formula_units': orm.Int(8),
        'density': orm.Float(2.4),
        'min_distance': orm.Float(1.5),
        'seed': orm.Int(3),
    }
    structure, node = random_melt.run_get_node(**inputs)
    assert node.is_finished_ok
    assert structure.is_stored
    assert structure.creator.pk == node.pk
    links = node.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()
    incoming = {link.link_label: link.node.pk for link in links}
    assert incoming == {label: value.pk for label, value in inputs.items()}
    assert structure.get_formula() == 'O16Si8'
    expected = random_packing(SIO2, 8, 2.4, 1.5, seed=3)
    assert np.allclose(structure.get_ase().positions, expected.positions)
    assert density_g_cm3(structure.get_ase()) == pytest.approx(2.4, rel=1e-6)


def test_random_melt_reports_bad_input(aiida_profile):
    from aiida import orm

    from aiida_liqcryst.calcfunctions import random_melt

    with pytest.raises(ValueError, match='composition'):
        random_melt(
            composition=orm.Dict({'Si': 1, 'Xq': 2}), formula_units=orm.Int(8), density=orm.Float(2.2),
            min_distance=orm.Float(1.5), seed=orm.Int(0),
        )
    failed = orm.QueryBuilder().append(
        orm.CalcFunctionNode, filters={'attributes.process_label': 'random_melt'}, tag='calc', project='*'
    ).append(orm.Dict, with_outgoing='calc', filters={'attributes.Xq': 2}, project=[]).all(flat=True)
    assert len(failed) == 1 and failed[0].is_excepted
    assert 'composition must map element symbols' in failed[0].exception
    assert not failed[0].base.links.get_outgoing().all()
