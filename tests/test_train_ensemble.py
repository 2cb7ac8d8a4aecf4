"""TrainEnsembleWorkChain with real dp: models differ by seed only; protocols; bad inputs."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_liqcryst.workflows.train_ensemble import TrainEnsembleWorkChain


def test_ensemble_models_differ_by_seed(ensemble, melt_frames):
    potentials = ensemble.outputs.potentials
    assert sorted(potentials.keys()) == ['model_0', 'model_1']
    atoms, _ = melt_frames[0]
    energies = []
    for key in ('model_0', 'model_1'):
        calc = potentials[key].get_calculator()
        probe = atoms.copy()
        probe.calc = calc
        energies.append(probe.get_potential_energy())
        assert np.isfinite(energies[-1])
    assert energies[0] != pytest.approx(energies[1], abs=1e-6)  # different seeds, different models
    seeds = sorted(
        n.inputs.seed.value for n in orm.QueryBuilder().append(
            orm.WorkflowNode, filters={'id': ensemble.pk}, tag='wc'
        ).append(orm.WorkflowNode, with_incoming='wc', tag='base').append(orm.CalcJobNode, with_incoming='base').all(flat=True)
    )
    assert seeds == [1, 2]


def test_ensemble_summary_is_the_mean_of_the_models(ensemble):
    summary = ensemble.outputs.summary.get_dict()
    assert summary['number_of_models'] == 2
    values = [m['rmse_f_trn'] for m in summary['models'].values()]
    assert summary['rmse_f_trn_mean'] == pytest.approx(np.mean(values))


def test_protocols_and_paper_parameters(sio2_dataset, codes):
    assert set(TrainEnsembleWorkChain.get_available_protocols()) >= {'demo', 'paper'}
    paper = TrainEnsembleWorkChain.get_protocol_inputs('paper')
    descriptor = paper['parameters']['model']['descriptor']
    assert (descriptor['type'], descriptor['rcut'], descriptor['rcut_smth']) == ('se_e2_a', 7.0, 4.0)
    assert descriptor['neuron'] == [50, 100]
    assert paper['parameters']['model']['fitting_net']['neuron'] == [250, 250, 250]
    lr = paper['parameters']['learning_rate']
    assert (lr['start_lr'], lr['stop_lr']) == (1e-3, 1e-5)
    loss = paper['parameters']['loss']
    assert (loss['start_pref_e'], loss['start_pref_f'], loss['start_pref_v']) == (5.0, 500.0, 5.0)
    assert paper['parameters']['training']['numb_steps'] == 1_000_000
    assert paper['parameters']['training']['batch_size'] == 1
    assert paper['number_of_models'] == 4
    builder = TrainEnsembleWorkChain.get_builder_from_protocol(codes['dp'], sio2_dataset, protocol='paper')
    assert builder.train.train.parameters['model']['type_map'] == sio2_dataset.type_map
    assert builder.seeds.get_list() == [0, 1, 2, 3]
    # the fast path on CPUs (benchmarks/README.md, Backends): TensorFlow, compressed models for production-size MD
    assert (builder.train.train.backend.value, builder.train.train.compress.value) == ('tf', True)
    demo = TrainEnsembleWorkChain.get_builder_from_protocol(codes['dp'], sio2_dataset, protocol='demo')
    assert (demo.train.train.backend.value, demo.train.train.compress.value) == ('tf', False)
    gpu = TrainEnsembleWorkChain.get_builder_from_protocol(codes['dp'], sio2_dataset, protocol='paper',
                                                           overrides={'backend': 'pt'})
    assert gpu.train.train.backend.value == 'pt'
    with pytest.raises(ValueError, match='unknown protocol `fast`'):
        TrainEnsembleWorkChain.get_builder_from_protocol(codes['dp'], sio2_dataset, protocol='fast')


@pytest.mark.parametrize('seeds, message', [([], 'non-empty'), ([1, 1], 'distinct'), ([-1, 2], 'non-negative')])
def test_bad_seeds_rejected_before_running(codes, sio2_dataset, seeds, message):
    builder = TrainEnsembleWorkChain.get_builder_from_protocol(codes['dp'], sio2_dataset, protocol='demo')
    with pytest.raises(ValueError, match=message):
        builder.seeds = orm.List(seeds)  # the port validator answers at once, before anything runs
    inputs = dict(builder)
    inputs['seeds'] = orm.List(seeds)
    with pytest.raises(ValueError, match=message):
        run_get_node(TrainEnsembleWorkChain, **inputs)


def test_init_models_start_from_the_previous_weights(ensemble, codes, sio2_dataset, melt_frames):
    """`init_models` starts each model from the previous weights (`dp train --init-model`). With a learning rate
    of 1e-9 the weights cannot move: each new model must predict what its parent predicts, not what a fresh
    network of its seed would."""
    from .conftest import TINY_PARAMETERS

    parameters = {
        **TINY_PARAMETERS,
        'learning_rate': {'type': 'exp', 'start_lr': 1e-9, 'stop_lr': 1e-10, 'decay_steps': 5},
        'training': {**TINY_PARAMETERS['training'], 'numb_steps': 10, 'save_freq': 10},
    }
    builder = TrainEnsembleWorkChain.get_builder_from_protocol(
        codes['dp'], sio2_dataset, protocol='demo', overrides={'parameters': parameters}, seeds=[1, 2]
    )
    previous = dict(ensemble.outputs.potentials.items())
    # crossed on purpose: model_0 starts from the parent model_1 and vice versa
    builder.init_models = {
        'model_0': previous['model_1'].creator.outputs.remote_folder,
        'model_1': previous['model_0'].creator.outputs.remote_folder,
    }
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status

    atoms, _ = melt_frames[0]

    def energy(potential):
        probe = atoms.copy()
        probe.calc = potential.get_calculator()
        return probe.get_potential_energy()

    parents = {key: energy(potential) for key, potential in previous.items()}
    assert parents['model_0'] != pytest.approx(parents['model_1'], abs=1e-3)
    for key, parent in (('model_0', 'model_1'), ('model_1', 'model_0')):
        calc = node.outputs.potentials[key].creator
        assert calc.inputs.restart_mode.value == 'init_model'
        assert energy(node.outputs.potentials[key]) == pytest.approx(parents[parent], abs=1e-4)


def test_init_models_keys_must_name_models(ensemble, codes, sio2_dataset):
    builder = TrainEnsembleWorkChain.get_builder_from_protocol(codes['dp'], sio2_dataset, protocol='demo', seeds=[1, 2])
    folder = ensemble.outputs.potentials['model_0'].creator.outputs.remote_folder
    builder.init_models = {'model_5': folder}
    with pytest.raises(ValueError, match='`init_models`: keys \\[\'model_5\'\\] match no model'):
        run_get_node(builder)
