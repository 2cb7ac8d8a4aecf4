"""The oracle (SevenNet-0): PBE-like physics, consistent labels, and its CalcJob on real runs."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_liqcryst.engines import oracle
from aiida_liqcryst.structures.polymorphs import cif_path  # the CIFs the package ships

# PBE enthalpy of stishovite relative to alpha-quartz (meV/atom), measured with the oracle at 0 and 10 GPa
KNOWN_DH = {0.0: 191.0, 10.0: -63.0}


# Cells of 6-12 atoms gain nothing from intra-op threads, and spinning threads collapse when the cores are
# shared (parallel jobs, a busy CI runner): one thread in process and in the jobs keeps the timing predictable.
ONE_THREAD = 'export OMP_NUM_THREADS=1'


@pytest.fixture(scope='module', autouse=True)
def single_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def read_polymorph(name: str) -> Atoms:
    import ase.io

    return ase.io.read(cif_path(name))


def relaxed_enthalpy(atoms: Atoms, pressure_gpa: float, fmax: float = 0.02) -> float:
    """Enthalpy per atom (eV) after relaxing cell and positions at ``pressure_gpa`` (FrechetCellFilter + BFGS)."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS
    from ase.units import GPa

    atoms = atoms.copy()
    atoms.calc = oracle.get_calculator()
    cell_filter = FrechetCellFilter(atoms, scalar_pressure=pressure_gpa * GPa)
    optimizer = BFGS(cell_filter, logfile=None)
    assert optimizer.run(fmax=fmax, steps=300), f'relaxation at {pressure_gpa} GPa did not converge'
    return (atoms.get_potential_energy() + pressure_gpa * GPa * atoms.get_volume()) / len(atoms)


@pytest.mark.parametrize('pressure', sorted(KNOWN_DH))
def test_oracle_orders_sio2_polymorphs_like_pbe(pressure):
    """Stishovite above alpha-quartz at 0 GPa, below it at 10 GPa (PBE: the transition lies in between)."""
    difference = 1000 * (
        relaxed_enthalpy(read_polymorph('stishovite'), pressure)
        - relaxed_enthalpy(read_polymorph('alpha_quartz'), pressure)
    )
    assert np.sign(difference) == np.sign(KNOWN_DH[pressure])
    assert difference == pytest.approx(KNOWN_DH[pressure], abs=10.0)


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """``atoms`` with cell and positions deformed by (1 + strain)."""
    atoms = atoms.copy()
    deformation = np.eye(3) + strain
    atoms.set_cell(atoms.get_cell().array @ deformation.T, scale_atoms=False)
    atoms.set_positions(atoms.get_positions() @ deformation.T)
    return atoms


@pytest.fixture(scope='module')
def distorted_quartz():
    """Compressed, sheared and rattled alpha-quartz: non-zero forces and a large anisotropic virial."""
    atoms = read_polymorph('alpha_quartz')
    atoms.rattle(0.05, seed=3)
    return strained(atoms, np.array([[-0.04, 0.01, 0.0], [0.01, -0.03, 0.0], [0.0, 0.0, -0.05]]))


def test_virial_is_minus_strain_derivative_of_energy(distorted_quartz):
    """W = -dE/dε: isotropic strain against -trace(W), and a general symmetric strain against -W:ε."""
    label = oracle.label_atoms(distorted_quartz)
    virial = label['virial']
    assert np.allclose(virial, virial.T, atol=1e-4)
    eps = 2e-3
    for direction in (np.eye(3), np.array([[0.3, 1.0, -0.5], [1.0, -0.7, 0.4], [-0.5, 0.4, 0.2]])):
        plus = oracle.label_atoms(strained(distorted_quartz, eps * direction))['energy']
        minus = oracle.label_atoms(strained(distorted_quartz, -eps * direction))['energy']
        derivative = (plus - minus) / (2 * eps)
        expected = -np.sum(virial * direction)  # = -trace(W) for the isotropic strain
        assert abs(expected) > 5.0  # the check has something to compare (eV)
        assert derivative == pytest.approx(expected, rel=0.01)


def test_forces_are_minus_position_derivative_of_energy(distorted_quartz):
    label = oracle.label_atoms(distorted_quartz)
    atom = int(np.argmax(np.linalg.norm(label['forces'], axis=1)))
    step = 1e-3
    for axis in range(3):
        shifted = []
        for sign in (1, -1):
            atoms = distorted_quartz.copy()
            atoms.positions[atom, axis] += sign * step
            shifted.append(oracle.label_atoms(atoms)['energy'])
        derivative = (shifted[0] - shifted[1]) / (2 * step)
        assert -derivative == pytest.approx(label['forces'][atom, axis], abs=0.02)


def test_validate_settings():
    assert oracle.validate_settings({}) is None
    assert oracle.validate_settings({'relax_steps': 5, 'fmax': 0.1, 'md': {'steps': 4, 'every': 2, 'temperature': 3000,
                                                                            'timestep': 1.0, 'seed': 1}}) is None
    bad = [
        {'relax_steps': -1},
        {'relax_steps': 2.5},
        {'fmax': 0},
        {'steps': 3},
        {'md': {'steps': 4, 'every': 8, 'temperature': 3000, 'timestep': 1.0}},
        {'md': {'steps': 4, 'every': 2, 'temperature': -1, 'timestep': 1.0}},
        {'md': {'steps': 4, 'every': 2, 'timestep': 1.0}},
        {'md': {'steps': True, 'every': 1, 'temperature': 300, 'timestep': 1.0}},
    ]
    for settings in bad:
        assert oracle.validate_settings(settings), settings


# ---------------------------------------------------------------------------------------------------------------------
# OracleCalculation: the console script run by the AiiDA engine
# ---------------------------------------------------------------------------------------------------------------------


def small_melt(seed: int) -> Atoms:
    from aiida_liqcryst.structures.random_packing import random_packing

    return random_packing({'Si': 1, 'O': 2}, 4, 2.6, 1.5, seed=seed)


def overlapping() -> Atoms:
    """Two atoms on the same site: the oracle returns NaN, the structure must be reported as failed."""
    atoms = small_melt(7)
    atoms.positions[1] = atoms.positions[0]
    return atoms


def run_oracle(codes, structures: dict, settings: dict | None = None):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_liqcryst.calculations.oracle import OracleCalculation

    inputs = {
        'code': codes['oracle'],
        'structures': {key: orm.StructureData(ase=atoms) for key, atoms in structures.items()},
        'metadata': {'options': {'max_wallclock_seconds': 600, 'prepend_text': ONE_THREAD}},
    }
    if settings is not None:
        inputs['settings'] = orm.Dict(settings)
    return run_get_node(OracleCalculation, **inputs)


def test_oracle_calculation_labels_and_reports_failures(codes):
    """Labels equal the in-process oracle; a broken structure is reported with exit code 310, never dropped."""
    structures = {'melt_a': small_melt(1), 'melt_b': small_melt(2), 'broken': overlapping()}
    results, node = run_oracle(codes, structures)

    assert node.exit_status == 310, node.exit_message
    assert 'broken' in node.exit_message
    parameters = results['output_parameters'].get_dict()
    assert set(parameters['failed']) == {'broken'}
    assert 'non-finite' in parameters['failed']['broken']
    assert parameters['n_labeled'] == 2 and parameters['n_failed'] == 1
    assert parameters['seconds_per_label'] > 0
    assert set(results['labels']) == set(results['structures']) == {'melt_a', 'melt_b'}
    for key in ('melt_a', 'melt_b'):
        labels = results['labels'][key]
        expected = oracle.label_atoms(structures[key])
        assert labels.get_array('energy').shape == (1,)
        assert labels.get_array('forces').shape == (len(structures[key]), 3)
        assert labels.get_array('virial').shape == (3, 3)
        assert labels.get_array('energy')[0] == pytest.approx(expected['energy'], abs=1e-4)
        assert np.allclose(labels.get_array('forces'), expected['forces'], atol=1e-4)
        assert np.allclose(labels.get_array('virial'), expected['virial'], atol=1e-3)
        assert np.allclose(results['structures'][key].get_ase().positions, structures[key].positions, atol=1e-6)


def test_oracle_calculation_md_frames(codes):
    """Relax + MD mode: `steps // every` frames per structure, each labeled at its own geometry."""
    settings = {'relax_steps': 3, 'md': {'steps': 4, 'every': 2, 'temperature': 3000.0, 'timestep': 1.0, 'seed': 5}}
    structures = {'melt': small_melt(3)}
    results, node = run_oracle(codes, structures, settings)

    assert node.is_finished_ok, node.exit_message
    assert set(results['structures']) == set(results['labels']) == {'melt_f0', 'melt_f1'}
    assert results['output_parameters']['frames'] == {'melt': ['melt_f0', 'melt_f1']}
    positions = [results['structures'][key].get_ase().positions for key in ('melt_f0', 'melt_f1')]
    assert not np.allclose(positions[0], positions[1], atol=1e-3)  # the atoms moved between frames
    for key in ('melt_f0', 'melt_f1'):
        frame = results['structures'][key].get_ase()
        expected = oracle.label_atoms(frame)
        assert results['labels'][key].get_array('energy')[0] == pytest.approx(expected['energy'], abs=1e-3)
        assert np.allclose(results['labels'][key].get_array('forces'), expected['forces'], atol=1e-3)


@pytest.mark.parametrize(
    'settings, structures, message',
    [
        ({'md': {'steps': 2, 'every': 4, 'temperature': 300.0, 'timestep': 1.0}}, {'a': 'melt'}, 'md.every'),
        ({'relax_steps': -2}, {'a': 'melt'}, 'relax_steps'),
        ({'temperature': 300.0}, {'a': 'melt'}, 'unknown oracle settings'),
        (None, {}, 'at least one structure'),
    ],
)
def test_oracle_calculation_rejects_bad_inputs(codes, settings, structures, message):
    """Bad settings or no structures: a ValueError naming the problem, before anything runs."""
    from aiida.orm import CalcJobNode, QueryBuilder

    before = QueryBuilder().append(CalcJobNode).count()
    with pytest.raises(ValueError, match=message):
        run_oracle(codes, {key: small_melt(0) for key in structures}, settings)
    assert QueryBuilder().append(CalcJobNode).count() == before


@pytest.fixture(scope='module')
def silent_code(codes):
    """A code for the oracle plugin whose executable exits at once and writes nothing (a job that died early)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    computer = codes['oracle'].computer
    try:
        return orm.load_code(f'oracle-silent@{computer.label}')
    except NotExistent:
        return orm.InstalledCode(computer=computer, filepath_executable='/bin/false', label='oracle-silent',
                                 default_calc_job_plugin='liqcryst.oracle').store()


def test_oracle_calculation_without_output(codes, silent_code):
    results, node = run_oracle({**codes, 'oracle': silent_code}, {'melt': small_melt(0)})
    assert node.exit_status == 300
    assert 'results.json' in node.exit_message
    assert 'labels' not in results and 'structures' not in results
