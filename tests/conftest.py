"""Shared fixtures: a temporary AiiDA profile, the real codes, and small real SiO2 data.

Fixtures that only one test module needs live in that module.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']

FORMULA_UNITS = 8  # 24-atom SiO2 cells: big enough for a melt, small enough for seconds per MD
DENSITY = 2.6
MIN_DISTANCE = 1.5


@pytest.fixture(scope='session')
def codes(aiida_profile, tmp_path_factory):
    """The localhost computer and the codes ``aiida-liqcryst setup`` registers, as a dict by label."""
    from aiida import orm

    from aiida_liqcryst.cli.setup import ensure_codes, ensure_computer

    computer = ensure_computer(workdir=str(tmp_path_factory.mktemp('aiida_work')))
    findings = ensure_codes(computer)
    return {f.name: orm.load_code(f'{f.name}@{computer.label}') for f in findings if f.found}


@pytest.fixture(scope='session')
def melt_frames():
    """Six random 24-atom SiO2 packings, briefly relaxed and labeled by the oracle (in process).

    A list of ``(ase.Atoms, label)`` with label = dict(energy, forces, virial): the DEVELOPERS.md frame.
    """
    from aiida_liqcryst.engines import oracle
    from aiida_liqcryst.structures.random_packing import random_packing

    frames = []
    for seed in range(6):
        atoms = random_packing({'Si': 1, 'O': 2}, FORMULA_UNITS, DENSITY, MIN_DISTANCE, seed=seed)
        atoms = oracle.relax(atoms, steps=10 + 5 * seed)  # different depths: a spread of energies
        frames.append((atoms, oracle.label_atoms(atoms)))
    return frames


def labeled_nodes(frames):
    """``structure_<k>`` / ``labels_<k>`` node pairs for ``build_dataset`` (unstored)."""
    from aiida import orm

    nodes = {}
    for k, (atoms, label) in enumerate(frames):
        arrays = orm.ArrayData()
        arrays.set_array('energy', np.array([label['energy']]))
        arrays.set_array('forces', np.asarray(label['forces']))
        arrays.set_array('virial', np.asarray(label['virial']))
        nodes[f'structure_{k}'] = orm.StructureData(ase=atoms)
        nodes[f'labels_{k}'] = arrays
    return nodes


@pytest.fixture(scope='session')
def sio2_dataset(aiida_profile, melt_frames):
    """A stored LabeledDatasetData of the six melt frames, made by the build_dataset calcfunction."""
    from aiida import orm

    from aiida_liqcryst.deepmd.calcfunctions import build_dataset

    return build_dataset(type_map=orm.List(['O', 'Si']), **labeled_nodes(melt_frames))


TINY_PARAMETERS = {
    'model': {
        'type_map': ['O', 'Si'],
        'descriptor': {'type': 'se_e2_a', 'rcut': 4.0, 'rcut_smth': 1.0, 'sel': [24, 12], 'neuron': [4, 8], 'axis_neuron': 4},
        'fitting_net': {'neuron': [8, 8]},
    },
    'learning_rate': {'type': 'exp', 'start_lr': 0.005, 'stop_lr': 0.0005, 'decay_steps': 20},
    'loss': {
        'type': 'ener', 'start_pref_e': 0.2, 'limit_pref_e': 1.0, 'start_pref_f': 100.0,
        'limit_pref_f': 1.0, 'start_pref_v': 0.0, 'limit_pref_v': 0.0,
    },
    'training': {'numb_steps': 100, 'batch_size': 1, 'disp_freq': 10, 'save_freq': 50},
}


@pytest.fixture
def tiny_parameters():
    """deepmd input sections for a network that trains 100 steps in seconds (a fresh copy per test)."""
    import copy

    return copy.deepcopy(TINY_PARAMETERS)


@pytest.fixture(scope='session')
def ensemble(codes, sio2_dataset):
    """A finished TrainEnsembleWorkChain of 2 tiny models (real dp) on ``sio2_dataset``."""
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.train_ensemble import TrainEnsembleWorkChain

    builder = TrainEnsembleWorkChain.get_builder_from_protocol(
        codes['dp'], sio2_dataset, protocol='demo', overrides={'parameters': TINY_PARAMETERS}, seeds=[1, 2]
    )
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    return node


COMPOSITION = {'Si': 1, 'O': 2}


TINY_PREMELT = {'temperature': 3000, 'hot_steps': 300, 'steps': 300}


def tiny_overrides(**extra):
    """ActiveLoop ``demo`` overrides for 2 real iterations of 2 tiny models on 2 small packings (minutes)."""
    overrides = {
        'formula_units': 8,
        'number_of_structures': 2,
        'max_iterations': 2,
        'reuse_models': True,  # iteration 1 fine-tunes iteration 0's models (dp train --init-model)
        # ... for half the steps (merged over the demo protocol's reuse_parameters)
        'reuse_parameters': {'training': {'numb_steps': TINY_PARAMETERS['training']['numb_steps'] // 2}},
        'train': {'overrides': {'parameters': TINY_PARAMETERS, 'number_of_models': 2}},
        # a window that takes every frame: candidates in each iteration, so the loop runs to its bound
        'explore': {'eps_lo': 0.0, 'eps_hi': 1.0e6, 'max_candidates': 3, 'selection': 'fps'},
        'initial_label': {'settings': {'oracle': {'relax_steps': 0, 'md': {'steps': 12, 'temperature': 3000, 'timestep': 1.0, 'every': 4}}}},
        'premelt': {'parameters': TINY_PREMELT},
        'schedule': {'HP': [{'temperatures': [3000], 'pressures': [0, 10], 'steps': 60, 'dump_every': 10}]},
    }
    overrides.update(extra)
    return overrides


# the reference melt of the held-out set: 2 packings x 2 temperatures, pre-melted in LAMMPS (0.3 ps hot, 0.3 ps at
# the run's temperature), then 12 MD steps, frames at 8 and 12
TINY_MELT = {
    'densities': [2.3, 3.0],
    'temperatures': [3000, 4000],
    'batch_size': 2,
    'premelt': {'parameters': {'hot_steps': 300, 'steps': 300}},
    'settings': {'oracle': {'relax_steps': 0, 'md': {'steps': 12, 'temperature': 3000, 'timestep': 1.0, 'every': 4, 'skip': 4}}},
}
# the tiny loop's production training: one tiny model, started from the final ensemble's model_0
TINY_PRODUCTION = {'protocol': 'demo', 'reuse': True, 'overrides': {'parameters': TINY_PARAMETERS, 'number_of_models': 1}}


@pytest.fixture(scope='session')
def holdout_set(codes):
    """A finished tiny ReferenceMeltWorkChain (``TINY_MELT``): held-out frames from the oracle's own MD."""
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.reference_melt import ReferenceMeltWorkChain

    builder = ReferenceMeltWorkChain.get_builder_from_protocol(codes['oracle'], COMPOSITION, protocol='demo', overrides=TINY_MELT,
                                                               lammps_code=codes['lmp'])
    _, node = run_get_node(builder)
    return node


@pytest.fixture(scope='session')
def tiny_loop(codes, holdout_set):
    """One finished tiny ActiveLoopWorkChain (``tiny_overrides``), scored on ``holdout_set`` every iteration and
    ended by a production training; shared by the loop, query and archive tests."""
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.active_loop import ActiveLoopWorkChain

    codes = {**codes, 'engine': codes['oracle']}
    builder = ActiveLoopWorkChain.get_builder_from_protocol(
        codes, COMPOSITION, engine='oracle', protocol='demo', overrides=tiny_overrides(production=TINY_PRODUCTION),
        holdout=holdout_set.outputs.dataset,
    )
    _, node = run_get_node(builder)
    return node
