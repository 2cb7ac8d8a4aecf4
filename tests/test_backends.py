"""Both deepmd-kit backends end to end with real dp, lmp and oracle: train -> freeze -> compress -> ExploreMD with
model deviation -> labels; and the inputs that mix them, refused before anything runs."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.deepmd.backends import BACKENDS
from aiida_liqcryst.deepmd.data.potential import DeepPotentialData

from .conftest import TINY_PARAMETERS

TrainEnsembleWorkChain = WorkflowFactory('liqcryst.train_ensemble')
ExploreMDWorkChain = WorkflowFactory('liqcryst.explore_md')
LabelWorkChain = WorkflowFactory('liqcryst.label')
CONDITION = {'temperature': 3000.0, 'pressure': 0.0, 'ensemble': 'npt', 'steps': 60, 'dump_every': 10, 'seed': 3}


@pytest.fixture(scope='module', params=sorted(BACKENDS))
def chain(request, codes, sio2_dataset, melt_frames):
    """Per backend: a compressed tiny ensemble of 2, its exploration of one melt and the labels of its candidates."""
    backend = request.param
    builder = TrainEnsembleWorkChain.get_builder_from_protocol(
        codes['dp'], sio2_dataset, protocol='demo', seeds=[1, 2],
        overrides={'parameters': TINY_PARAMETERS, 'backend': backend, 'compress': True},
    )
    _, train = run_get_node(builder)
    assert train.is_finished_ok, train.exit_message

    builder = ExploreMDWorkChain.get_builder()
    builder.code = codes['lmp']
    builder.potentials = dict(train.outputs.potentials.items())
    builder.structures = {'melt': orm.StructureData(ase=melt_frames[1][0])}
    builder.conditions = orm.List([CONDITION])
    builder.eps_lo, builder.eps_hi = orm.Float(0.0), orm.Float(1.0e6)  # every frame a candidate
    builder.max_candidates = orm.Int(2)
    builder.selection = orm.Str('random')
    _, explore = run_get_node(builder)
    assert explore.is_finished_ok, explore.exit_message

    builder = LabelWorkChain.get_builder_from_protocol(
        codes['oracle'], dict(explore.outputs.candidates.items()), 'oracle', sio2_dataset.type_map, protocol='demo')
    _, label = run_get_node(builder)
    return backend, train, explore, label


def test_train_freeze_compress(chain, melt_frames):
    """Each backend trains with its own dp flag and freezes its own model format; compressed models predict."""
    backend, train, _, _ = chain
    info = BACKENDS[backend]
    potentials = dict(train.outputs.potentials.items())
    assert len(potentials) == 2
    for potential in potentials.values():
        assert potential.deepmd_backend.name == backend
        assert potential.filename == info.compressed_model
        assert potential.compressed is True
        calc = potential.creator
        assert calc.inputs.backend.value == backend
        assert calc.outputs.output_parameters['backend'] == backend
        assert calc.outputs.output_parameters['rmse_f_dataset'] > 0  # dp test ran on the model
        for log in ('train.log', 'freeze.log', 'compress.log', 'test.log'):
            assert log in calc.outputs.retrieved.base.repository.list_object_names()
        assert info.finished in calc.outputs.retrieved.get_object_content('train.log')
    atoms = melt_frames[0][0].copy()
    forces = []
    for potential in potentials.values():
        atoms.calc = potential.get_calculator()
        forces.append(atoms.get_forces())
        assert np.all(np.isfinite(forces[-1]))
    assert not np.allclose(forces[0], forces[1], atol=1e-4)  # two seeds: a model deviation to measure


def test_exploration_writes_the_model_deviation(chain):
    """LAMMPS loads the ensemble in its format (files keep the backend's suffix) and writes a real deviation."""
    backend, train, explore, _ = chain
    md = next(n for n in explore.called_descendants if n.process_label == 'ExploreMDCalculation')
    assert md.is_finished_ok, md.exit_message
    script = md.base.repository.get_object_content('input.lammps')
    suffix = BACKENDS[backend].suffix
    assert f'deepmd model_0{suffix} model_1{suffix} ' in script
    devi = md.outputs.model_deviation
    max_f = devi.get_array('max_devi_f')
    assert len(max_f) == CONDITION['steps'] // CONDITION['dump_every'] + 1
    assert np.all(np.isfinite(max_f)) and np.all(max_f > 0)


def test_candidates_labeled(chain):
    """The candidates of the exploration are labeled by the oracle: the dataset holds exactly them."""
    _, _, explore, label = chain
    assert label.is_finished_ok, label.exit_message
    candidates = dict(explore.outputs.candidates.items())
    assert len(candidates) == 2
    assert label.outputs.dataset.nframes == len(candidates)


def test_mixed_ensemble_refused(ensemble, codes, melt_frames, tmp_path):
    """An ExploreMD ensemble with a TensorFlow and a PyTorch model is refused, naming the fix."""
    from .test_bad_inputs import untrained_model

    tf_model = ensemble.outputs.potentials.model_0  # the shared ensemble trains with the default backend
    pt_model = DeepPotentialData(str(untrained_model(tmp_path / 'model.pth', seed=1)))
    assert (tf_model.deepmd_backend.name, pt_model.deepmd_backend.name) == ('tf', 'pt')
    builder = ExploreMDWorkChain.get_builder()
    builder.code = codes['lmp']
    builder.potentials = {'m0': tf_model, 'm1': pt_model}
    builder.structures = {'melt': orm.StructureData(ase=melt_frames[1][0])}
    builder.conditions = orm.List([CONDITION])
    builder.eps_lo, builder.eps_hi = orm.Float(0.1), orm.Float(1.0)
    with pytest.raises(ValueError, match='one deepmd-kit backend'):
        run_get_node(builder)


def test_fine_tuning_across_backends_refused(chain, codes, sio2_dataset):
    """init_models from the other backend's trainings: refused before any dp runs, saying which backend to set."""
    backend, train, _, _ = chain
    other = next(name for name in BACKENDS if name != backend)
    builder = TrainEnsembleWorkChain.get_builder_from_protocol(
        codes['dp'], sio2_dataset, protocol='demo', seeds=[1, 2],
        overrides={'parameters': TINY_PARAMETERS, 'backend': other},
    )
    builder.init_models = {key: p.creator.outputs.remote_folder for key, p in train.outputs.potentials.items()}
    with pytest.raises(ValueError, match=f'set `backend` to `{backend}`'):
        run_get_node(builder)


def test_unknown_backend_and_suffix_refused(codes, sio2_dataset, tmp_path):
    """Unknown backends, unknown model suffixes and checkpoint settings TensorFlow would not save with."""
    with pytest.raises(ValueError, match='unknown deepmd-kit backend'):
        TrainEnsembleWorkChain.get_builder_from_protocol(
            codes['dp'], sio2_dataset, protocol='demo', overrides={'backend': 'jax'}
        )
    from aiida_liqcryst.deepmd.calculations.train import DeepmdTrainCalculation

    with pytest.raises(ValueError, match='unknown deepmd-kit backend'):
        run_get_node(
            DeepmdTrainCalculation, code=codes['dp'], datasets={'melt': sio2_dataset},
            parameters=orm.Dict(TINY_PARAMETERS), seed=orm.Int(1), backend=orm.Str('tensorflow'),
        )
    parameters = {**TINY_PARAMETERS, 'training': {**TINY_PARAMETERS['training'], 'disp_freq': 12, 'save_freq': 50}}
    with pytest.raises(ValueError, match=r'save_freq` \(50\) must be a multiple of `disp_freq` \(12\)'):
        run_get_node(
            DeepmdTrainCalculation, code=codes['dp'], datasets={'melt': sio2_dataset},
            parameters=orm.Dict(parameters), seed=orm.Int(1), backend=orm.Str('tf'),
        )
    model = tmp_path / 'model.onnx'
    model.write_bytes(b'not a model')
    with pytest.raises(ValueError, match=r'\*\.pb \(TensorFlow\) or \*\.pth \(PyTorch\)'):
        DeepPotentialData(str(model))
