"""Real ``dp`` training and testing through AiiDA: outputs, seeds, compression, provenance, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_liqcryst.deepmd.calculations.test import DeepmdTestCalculation
from aiida_liqcryst.deepmd.calculations.train import DeepmdTrainCalculation
from aiida_liqcryst.deepmd.data.potential import DeepPotentialData

from .conftest import TINY_PARAMETERS


def train(codes, dataset, parameters, seed, **extra):
    return run_get_node(
        DeepmdTrainCalculation,
        code=codes['dp'],
        datasets={'melt': dataset},
        parameters=orm.Dict(parameters),
        seed=orm.Int(seed),
        **extra,
    )


def full_batch(dataset):
    """The tiny parameters with every frame in each batch: a smooth learning curve (batch size 1 is noisy)."""
    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters['training']['batch_size'] = max(s['nframes'] for s in dataset.systems)
    parameters['loss']['start_pref_f'] = 100  # an int, as AiiDA returns a stored 100.0: the calc casts it back
    return parameters


@pytest.fixture(scope='module')
def seed1(codes, sio2_dataset):
    """The tiny network trained 100 steps with seed 1."""
    return train(codes, sio2_dataset, full_batch(sio2_dataset), seed=1)


@pytest.fixture(scope='module')
def seed2_compressed(codes, sio2_dataset):
    """The same training with seed 2, compressed."""
    return train(codes, sio2_dataset, full_batch(sio2_dataset), seed=2, compress=orm.Bool(True))


def predict(potential, atoms):
    atoms = atoms.copy()
    atoms.calc = potential.get_calculator()
    return atoms.get_potential_energy(), atoms.get_forces()


def test_training_outputs(seed1, sio2_dataset, melt_frames):
    """A finished training: a loadable potential with finite predictions, a learning curve, final errors."""
    results, node = seed1
    assert node.is_finished_ok, node.exit_message
    potential = results['potential']
    assert isinstance(potential, DeepPotentialData)
    assert potential.filename == 'model.pb' and potential.deepmd_backend.name == 'tf'  # TensorFlow: the default backend
    assert potential.type_map == ['O', 'Si']
    assert potential.rcut == pytest.approx(TINY_PARAMETERS['model']['descriptor']['rcut'])
    assert potential.descriptor_type == 'se_e2_a'
    assert potential.compressed is False
    assert potential.base.attributes.get('model_size') > 0

    atoms = melt_frames[0][0]
    energy, forces = predict(potential, atoms)
    assert np.isfinite(energy) and forces.shape == (len(atoms), 3) and np.all(np.isfinite(forces))
    pot = potential.get_deep_pot()
    e, _, _ = pot.eval(atoms.get_positions().reshape(1, -1), atoms.get_cell().array.reshape(1, -1),
                       [potential.type_map.index(s) for s in atoms.get_chemical_symbols()])
    assert float(e[0][0]) == pytest.approx(energy, rel=1e-8)

    curve = results['learning_curve']
    steps = curve.get_array('step')
    assert steps[-1] == TINY_PARAMETERS['training']['numb_steps']
    assert np.all(np.diff(steps) > 0)
    assert {'rmse_trn', 'rmse_e_trn', 'rmse_f_trn', 'lr'} <= set(curve.get_arraynames())
    # the network learned: energy and force errors on the (full-batch) training data went down
    assert curve.get_array('rmse_e_trn')[-1] < curve.get_array('rmse_e_trn')[0]
    assert curve.get_array('rmse_f_trn')[-1] < curve.get_array('rmse_f_trn')[0]

    out = results['output_parameters'].get_dict()
    assert out['steps_done'] == TINY_PARAMETERS['training']['numb_steps']
    assert out['loss_decreased'] is True
    assert out['rmse_e_trn'] == pytest.approx(curve.get_array('rmse_e_trn')[-1])
    assert out['rmse_f_trn'] == pytest.approx(curve.get_array('rmse_f_trn')[-1])
    assert out['wall_time'] > 0
    # dp test over every training frame, checked against the model's own predictions of the six frames
    force_errors = np.concatenate([(predict(potential, atoms)[1] - label['forces']).ravel() for atoms, label in melt_frames])
    assert out['rmse_f_dataset'] == pytest.approx(np.sqrt(np.mean(force_errors**2)), rel=1e-3)
    energy_errors = [(predict(potential, atoms)[0] - label['energy']) / len(atoms) for atoms, label in melt_frames]
    assert out['rmse_e_dataset'] == pytest.approx(np.sqrt(np.mean(np.square(energy_errors))), rel=1e-3)

    # provenance: the potential comes from this calculation, which consumed the dataset
    assert potential.creator.uuid == node.uuid
    incoming = {link.link_label: link.node.uuid for link in node.base.links.get_incoming().all()}
    assert incoming['datasets__melt'] == sio2_dataset.uuid
    # the integer 100 of a float key is written as 100.0 in input.json
    import json

    assert isinstance(node.inputs.parameters['loss']['start_pref_f'], int)
    written = json.loads(node.outputs.retrieved.get_object_content('input.json'))
    assert isinstance(written['loss']['start_pref_f'], float) and written['loss']['start_pref_f'] == 100
    systems = [f'data/train/melt/{s["name"]}' for s in sio2_dataset.systems]
    assert written['training']['training_data']['systems'] == systems
    assert written['training']['seed'] == 1
    assert written['training']['training_data']['batch_size'] == full_batch(sio2_dataset)['training']['batch_size']


def test_seeds_and_compression(seed1, seed2_compressed, melt_frames):
    """Two seeds give different models; compress=True gives a compressed potential that loads and predicts."""
    results1, _ = seed1
    results2, node2 = seed2_compressed
    assert node2.is_finished_ok, node2.exit_message
    potential = results2['potential']
    assert potential.compressed is True
    assert potential.filename == 'model_compressed.pb'

    curve1 = results1['learning_curve'].get_array('rmse_trn')
    curve2 = results2['learning_curve'].get_array('rmse_trn')
    assert not np.allclose(curve1, curve2)  # different initial weights and batch order from the first step on

    atoms = melt_frames[0][0]
    energy1, forces1 = predict(results1['potential'], atoms)
    energy2, forces2 = predict(potential, atoms)
    assert np.isfinite(energy2) and np.all(np.isfinite(forces2))
    assert not np.allclose(forces1, forces2, atol=1e-3)  # far beyond the compression error


def test_dp_test_parity(codes, seed1, sio2_dataset):
    """dp test's reported RMSEs agree with the RMSEs recomputed from the parity arrays."""
    results, _ = seed1
    out, node = run_get_node(
        DeepmdTestCalculation, code=codes['dp'], potential=results['potential'], dataset=sio2_dataset
    )
    assert node.is_finished_ok, node.exit_message
    parity = out['parity']
    errors = out['output_parameters'].get_dict()
    e_ref, e_pred = parity.get_array('energy_reference'), parity.get_array('energy_predicted')
    f_ref, f_pred = parity.get_array('forces_reference'), parity.get_array('forces_predicted')
    assert len(e_ref) == errors['nframes'] == sio2_dataset.nframes
    assert f_ref.shape == (sum(s['natoms'] * s['nframes'] for s in sio2_dataset.systems), 3)
    # reference columns are the dataset's own labels
    data_energies = sorted(f['energy'] / len(f['symbols']) for f in sio2_dataset.get_frames())
    np.testing.assert_allclose(sorted(e_ref), data_energies, rtol=1e-10)
    assert errors['rmse_e_per_atom'] == pytest.approx(np.sqrt(np.mean((e_pred - e_ref) ** 2)), rel=1e-5)
    assert errors['rmse_f'] == pytest.approx(np.sqrt(np.mean((f_pred - f_ref) ** 2)), rel=1e-5)
    assert errors['mae_f'] == pytest.approx(np.mean(np.abs(f_pred - f_ref)), rel=1e-5)
    assert errors['max_f_error'] >= errors['rmse_f'] > 0
    v_ref, v_pred = parity.get_array('virial_reference'), parity.get_array('virial_predicted')
    assert errors['rmse_v_per_atom'] == pytest.approx(np.sqrt(np.mean((v_pred - v_ref) ** 2)), rel=1e-5)


def test_read_lcurve_drops_rows_a_restart_repeats():
    """A restart from the checkpoint of step 20 repeats steps 30, 40 of the killed run: the later rows win."""
    from aiida_liqcryst.deepmd.parsers.lcurve import read_lcurve, read_table

    header = '# step rmse_trn lr\n# If there is no available reference data, rmse_*_{val,trn} will print nan\n'
    killed = '10 3.0 1e-3\n20 2.0 1e-3\n30 9.0 1e-3\n40 9.0 1e-3\n'
    text = header + killed + header + '30 1.5 1e-3\n40 1.0 1e-3\n50 0.5 1e-3\n'
    curve = read_lcurve(text)
    assert list(curve['step']) == [10, 20, 30, 40, 50]
    assert list(curve['rmse_trn']) == [3.0, 2.0, 1.5, 1.0, 0.5]
    detail = read_table('# data/sys_000: data_e pred_e\n-6.0 -5.9\n-6.1 -6.2\n')
    assert list(detail) == ['data_e', 'pred_e'] and detail['pred_e'][1] == -6.2
    with pytest.raises(ValueError):
        read_table('# step rmse\n')


def count_train_calcs():
    return orm.QueryBuilder().append(orm.CalcJobNode, filters={'process_type': {'like': '%deepmd.train%'}}).count()


@pytest.mark.parametrize(
    ('change', 'message'),
    [
        (lambda p: p['model'].update(type_map=['Si', 'O']), r"type_map \['O', 'Si'\].*\['Si', 'O'\]"),
        (lambda p: p['training'].update(numb_steps=-5), 'numb_steps` must be a positive integer'),
        (lambda p: p['training'].update(not_a_deepmd_key=1), 'undefined key `not_a_deepmd_key`'),
    ],
    ids=['type_map', 'numb_steps', 'unknown_key'],
)
def test_bad_input_rejected_before_running(codes, sio2_dataset, tiny_parameters, change, message):
    """Inconsistent parameters fail validation with a clear message, and no calculation is created."""
    change(tiny_parameters)
    before = count_train_calcs()
    with pytest.raises(ValueError, match=message):
        train(codes, sio2_dataset, tiny_parameters, seed=1)
    assert count_train_calcs() == before
