"""The batched ASE tool (``aiida-liqcryst-ase``) through AseCalculation, with the oracle as calculator."""

from __future__ import annotations

import numpy as np
import pytest

from aiida_liqcryst.engines import ase_tasks
from aiida_liqcryst.structures import polymorphs

AMU_A2_PER_FS2_IN_EV = 103.642696  # 1 amu Å^2 fs^-2 in eV (CODATA), independent of ASE's unit system


def run_ase(codes, structures: dict, settings: dict, potential=None):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    builder = CalculationFactory('liqcryst.ase').get_builder()
    builder.code = codes['ase']
    builder.structures = structures
    builder.settings = orm.Dict(settings)
    if potential is not None:
        builder.potential = potential
    return run_get_node(builder)


def strained_stishovite():
    """Stishovite off its equilibrium: cell stretched along a, atoms rattled (deterministic)."""
    from aiida import orm

    atoms = polymorphs.get_atoms('stishovite')
    atoms.set_cell(atoms.cell.array @ np.diag([1.04, 1.0, 0.98]), scale_atoms=True)
    atoms.rattle(0.05, seed=3)
    return orm.StructureData(ase=atoms)


@pytest.mark.parametrize(
    'settings, message',
    [
        ({'task': 'phonons'}, 'unknown task'),
        ({'task': 'relax', 'steps': -1}, "'steps' must be >= 0"),
        ({'task': 'relax', 'fmax': 0}, "'fmax' must be > 0"),
        ({'task': 'relax', 'cell': False, 'fixed_volume': True}, 'needs'),
        ({'task': 'eos', 'volume_fractions': [0.9, 0.0, 1.1]}, 'positive'),
        ({'task': 'eos', 'volume_fractions': []}, 'non-empty'),
        ({'task': 'eos'}, "needs 'volume_fractions'"),
        ({'task': 'md', 'steps': 10}, "needs 'temperature'"),
        ({'task': 'md', 'temperature': 300, 'steps': 10, 'supercell': [2, 0, 1]}, 'supercell'),
        ({'task': 'md', 'temperature': 300, 'steps': 10, 'ensemble': 'npt'}, 'ensemble'),
        ({'task': 'md', 'temperature': 300, 'steps': 2.5}, 'whole number'),
        ({'task': 'label', 'fmax': 0.1}, 'unknown key'),
        ({'task': 'label', 'threads': 0}, "'threads' must be >= 1"),
    ],
)
def test_check_settings_rejects(settings, message):
    with pytest.raises(ValueError, match=message):
        ase_tasks.check_settings(settings)


def test_check_settings_casts_and_fills_defaults():
    settings = ase_tasks.check_settings({'task': 'eos', 'volume_fractions': [1, 0.9], 'pressure': 10, 'steps': 5})
    assert settings['volume_fractions'] == [1.0, 0.9] and isinstance(settings['volume_fractions'][0], float)
    assert isinstance(settings['pressure'], float) and settings['scan_steps'] == ase_tasks.TASK_DEFAULTS['eos']['scan_steps']


def test_bad_inputs_rejected_before_running(aiida_profile, codes):
    from aiida import orm

    stishovite = polymorphs.as_structure_data('stishovite')
    molecule = orm.StructureData(cell=[[10, 0, 0], [0, 10, 0], [0, 0, 10]], pbc=(False, False, False))
    molecule.append_atom(position=(0, 0, 0), symbols='Si')
    before = orm.QueryBuilder().append(orm.CalcJobNode).count()
    with pytest.raises(ValueError, match='settings.*volume_fractions'):
        run_ase(codes, {'s': stishovite}, {'task': 'eos', 'volume_fractions': [0.9, -1.0]})
    with pytest.raises(ValueError, match='settings.*steps'):
        run_ase(codes, {'s': stishovite}, {'task': 'md', 'temperature': 300, 'steps': -5})
    with pytest.raises(ValueError, match='3D periodic.*molecule'):
        run_ase(codes, {'s': stishovite, 'molecule': molecule}, {'task': 'relax'})
    with pytest.raises(ValueError, match='at least one structure'):
        run_ase(codes, {}, {'task': 'label'})
    assert orm.QueryBuilder().append(orm.CalcJobNode).count() == before  # nothing was launched


def test_label_matches_oracle_and_records_failures(aiida_profile, codes):
    """A batch label equals the oracle's own labelling; a broken structure is recorded, not dropped."""
    from aiida import orm

    from aiida_liqcryst.engines import oracle

    broken = polymorphs.get_atoms('stishovite')
    broken.positions[1] = broken.positions[0]  # two atoms on one site: the oracle returns NaN
    structures = {
        'stishovite': polymorphs.as_structure_data('stishovite'),
        'alpha_quartz': polymorphs.as_structure_data('alpha_quartz'),
        'broken': orm.StructureData(ase=broken),
    }
    results, node = run_ase(codes, structures, {'task': 'label'})

    assert node.exit_status == node.process_class.exit_codes.ERROR_SOME_STRUCTURES_FAILED.status
    summary = results['output_parameters'].get_dict()
    assert summary['structures']['broken']['status'] == 'failed'
    assert 'non-finite' in summary['structures']['broken']['error']
    assert set(results['results']) == {'stishovite', 'alpha_quartz'}
    for name in ('stishovite', 'alpha_quartz'):
        expected = oracle.label_atoms(structures[name].get_ase())
        arrays = results['results'][name]
        natoms = len(structures[name].sites)
        assert arrays.get_array('energy').shape == (1,)
        assert arrays.get_array('forces').shape == (natoms, 3)
        assert arrays.get_array('virial').shape == (3, 3)
        assert arrays.get_array('energy')[0] == pytest.approx(expected['energy'], abs=1e-4)
        np.testing.assert_allclose(arrays.get_array('forces'), expected['forces'], atol=1e-4)
        np.testing.assert_allclose(arrays.get_array('virial'), expected['virial'], atol=2e-3)
        assert summary['structures'][name]['status'] == 'ok'
        # a label leaves the geometry as it was
        np.testing.assert_allclose(results['structures'][name].get_ase().positions, structures[name].get_ase().positions, atol=1e-6)


def test_relax_lowers_energy_and_fixed_volume_keeps_volume(aiida_profile, codes):
    start = strained_stishovite()
    v_start = start.get_cell_volume()
    relax = {'task': 'relax', 'steps': 25, 'fmax': 0.02, 'pressure': 0.0}
    free, free_node = run_ase(codes, {'s': start}, relax)
    fixed, fixed_node = run_ase(codes, {'s': start}, {**relax, 'fixed_volume': True})
    assert free_node.is_finished_ok and fixed_node.is_finished_ok

    for results in (free, fixed):
        entry = results['output_parameters']['structures']['s']
        assert entry['energy'] < entry['initial_energy'] - 0.01
        assert results['results']['s'].get_array('energy')[0] == pytest.approx(entry['energy'])
        assert entry['steps'] >= 1
    # free relaxation moves the volume towards the oracle's equilibrium; fixed volume keeps it
    free_atoms = free['structures']['s'].get_ase()
    fixed_atoms = fixed['structures']['s'].get_ase()
    assert abs(free_atoms.get_volume() / v_start - 1) > 1e-3
    assert fixed_atoms.get_volume() == pytest.approx(v_start, rel=1e-6)
    assert not np.allclose(fixed_atoms.cell.array, start.get_ase().cell.array, atol=1e-4)  # the shape relaxed
    # the free cell relaxation lowers the pressure (eV/Å^3 -> GPa) from the strained start
    p_free = free['output_parameters']['structures']['s']['pressure']
    p_fixed = fixed['output_parameters']['structures']['s']['pressure']
    assert abs(p_free) < abs(p_fixed)


def test_md_trajectory(aiida_profile, codes):
    from ase.data import atomic_masses

    settings = {
        'task': 'md', 'temperature': 300.0, 'steps': 20, 'timestep': 1.0, 'every': 5, 'equilibration_steps': 5,
        'supercell': [1, 1, 2], 'seed': 7,
    }
    results, node = run_ase(codes, {'stishovite': polymorphs.as_structure_data('stishovite')}, settings)
    assert node.is_finished_ok
    trajectory = results['trajectory']['stishovite']
    natoms = 12  # 6-atom cell doubled along c
    assert trajectory.get_array('positions').shape == (5, natoms, 3)
    velocities = trajectory.get_array('velocities')
    assert velocities.shape == (5, natoms, 3)
    np.testing.assert_allclose(trajectory.get_array('times'), [0, 5, 10, 15, 20])
    # velocities are in Å/fs: their kinetic energy is the one ASE recorded
    masses = trajectory.get_array('masses')
    numbers = trajectory.get_array('numbers') if 'numbers' in trajectory.get_arraynames() else None
    assert numbers is None or np.allclose(masses, atomic_masses[numbers], atol=0.01)
    assert masses.min() == pytest.approx(atomic_masses[8], abs=0.01) and masses.max() == pytest.approx(atomic_masses[14], abs=0.01)
    kinetic = 0.5 * (masses[None, :, None] * velocities**2).sum(axis=(1, 2)) * AMU_A2_PER_FS2_IN_EV
    np.testing.assert_allclose(kinetic, trajectory.get_array('kinetic_energy'), rtol=1e-5)
    assert np.all(trajectory.get_array('temperature') > 0)
    assert len(results['structures']['stishovite'].sites) == natoms
    assert results['output_parameters']['structures']['stishovite']['frames'] == 5
