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
