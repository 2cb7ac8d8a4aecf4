"""ActiveLoopWorkChain end to end with real dp, lmp and the oracle: 2 iterations of a tiny protocol."""

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_liqcryst.workflows.active_loop import (
    PREMELT_LINK, ActiveLoopWorkChain, conditions_for, convergence_reason, densities_of, stage_error,
)

from .conftest import COMPOSITION


@pytest.fixture
def loop(tiny_loop):
    return tiny_loop


def test_loop_runs_to_its_bound(loop):
    assert loop.is_finished_ok, loop.exit_status
    assert 'max_iterations (2) reached' in loop.outputs.stop_reason.value
    rows = loop.outputs.iterations.get_list()
    assert [r['iteration'] for r in rows] == [0, 1]
    assert len(loop.outputs.potentials) == 2


def test_packings_are_made_at_the_given_densities(loop):
    from ase.units import _amu

    densities = densities_of(loop.inputs.density)
    packings = loop.base.links.get_outgoing(link_label_filter='initial_labels').one().node.inputs.structures
    assert len(packings) == 2 and len(densities) > 1
    # the reference labels the classical pre-melt of each random packing (LAMMPS, at the initial MD's temperature)
    premelt = loop.base.links.get_outgoing(link_label_filter=PREMELT_LINK).one().node
    assert premelt.is_finished_ok and premelt.inputs.parameters['temperature'] == 3000
    for index in range(2):
        key = f'melt_{index}'
        assert packings[key].uuid == premelt.outputs.structures[key].uuid
        assert premelt.inputs.structures[key].creator.process_label == 'random_melt'
        atoms = packings[key].get_ase()
        grams_per_cm3 = atoms.get_masses().sum() * _amu * 1e3 / (atoms.get_volume() * 1e-24)
        assert grams_per_cm3 == pytest.approx(densities[index], rel=1e-6)


def test_dataset_grows_by_exactly_the_labels_added(loop):
    rows = loop.outputs.iterations.get_list()
    initial = loop.base.links.get_outgoing(link_label_filter='initial_labels').one().node.outputs.dataset.nframes
    assert rows[0]['dataset_size'] == initial
    for row in rows:
        assert 0 < row['labels_added'] <= 3
        conditions = row['conditions']
        assert len(conditions) == 2  # 2 pressures, each explored from both structures
        assert all(c['frames'] == 2 * (60 // 10 + 1) for c in conditions.values())
    assert rows[1]['dataset_size'] == rows[0]['dataset_size'] + rows[0]['labels_added']
    assert loop.outputs.dataset.nframes == rows[1]['dataset_size'] + rows[1]['labels_added']


def test_second_iteration_fine_tunes_the_first_iterations_models(loop):
    """With reuse_models, iteration 1 starts each model from iteration 0's weights, with `reuse_parameters`
    merged over the training parameters (half the steps; the rest as in iteration 0)."""
    assert loop.inputs.reuse_models.value is True
    reuse_steps = loop.inputs.reuse_parameters['training']['numb_steps']

    def trainings(iteration):
        ensemble = loop.base.links.get_outgoing(link_label_filter=f'train_{iteration}').one().node
        return {key: potential.creator for key, potential in ensemble.outputs.potentials.items()}

    first, second = trainings(0), trainings(1)
    assert sorted(first) == sorted(second) == ['model_0', 'model_1']
    for key, calc in first.items():
        assert 'restart_from' not in calc.inputs
        assert second[key].inputs.restart_mode.value == 'init_model'
        assert second[key].inputs.restart_from.uuid == calc.outputs.remote_folder.uuid
        before, after = calc.inputs.parameters.get_dict(), second[key].inputs.parameters.get_dict()
        assert before['training']['numb_steps'] == 2 * reuse_steps
        assert after['training']['numb_steps'] == reuse_steps
        assert after['model'] == before['model']
        assert after['learning_rate'] == {**before['learning_rate'], **loop.inputs.reuse_parameters.get_dict().get('learning_rate', {})}


def test_exploration_starts_from_the_last_reference_md_frames(loop):
    """Not from the random packings: from the last frame of each packing's oracle MD (12 steps, every 4: f2)."""
    packings = loop.base.links.get_outgoing(link_label_filter='initial_labels').one().node.inputs.structures
    for iteration in (0, 1):
        exploration = loop.base.links.get_outgoing(link_label_filter=f'explore_{iteration}').one().node
        starts = exploration.inputs.structures
        assert sorted(starts) == sorted(packings)
        for key, start in starts.items():
            assert start.pk != packings[key].pk
            link = start.base.links.get_incoming().one()
            assert link.node.process_label == 'OracleCalculation' and link.link_label == f'structures__{key}_f2'


def test_labeled_frames_trace_back_to_md_and_models(loop):
    final = loop.outputs.dataset
    # the frames added in the last iteration: build_dataset <- labels <- oracle calc <- candidate <- select <- MD <- models
    qb = orm.QueryBuilder()
    qb.append(orm.CalcFunctionNode, filters={'attributes.function_name': 'select_candidates'}, tag='select', project='*')
    qb.append(orm.StructureData, with_incoming='select', tag='candidate', project='*')
    qb.append(orm.CalcJobNode, with_incoming='candidate', filters={'attributes.process_label': 'OracleCalculation'}, tag='oracle', project='*')
    rows = qb.all()
    assert rows, 'no candidate was labeled by the oracle'
    for select, candidate, oracle_calc in rows:
        md_calcs = [n for n in select.base.links.get_incoming().all_nodes() if isinstance(n, orm.Data)]
        creators = {getattr(n.creator, 'process_label', None) for n in md_calcs if n.creator is not None}
        assert 'ExploreMDCalculation' in creators
        md = next(n.creator for n in md_calcs if n.creator is not None and n.creator.process_label == 'ExploreMDCalculation')
        assert len(md.inputs.potentials) == 2
    # the final dataset descends from the merges
    assert final.creator.process_label in ('merge_datasets', 'build_dataset')


def test_schedule_and_inputs_validated_before_running(codes):
    assert stage_error({'temperatures': [-5], 'pressures': [0], 'steps': 10}).startswith('temperatures must')
    assert 'unknown keys' in stage_error({'temperatures': [3000], 'pressures': [0], 'steps': 10, 'tmep': 1})
    assert len(conditions_for({'temperatures': [3000, 4000], 'pressures': [0, 10, 20], 'steps': 10}, seed=1)) == 6
    codes = {**codes, 'engine': codes['oracle']}
    builder = ActiveLoopWorkChain.get_builder_from_protocol(codes, COMPOSITION, engine='oracle', protocol='demo')
    with pytest.raises(ValueError, match='lacks'):
        builder.schedule = orm.List([{'temperatures': [3000], 'pressures': [0]}])
    builder = ActiveLoopWorkChain.get_builder_from_protocol(codes, COMPOSITION, engine='oracle', protocol='demo')
    builder.explore.eps_lo = orm.Float(0.5)
    builder.explore.eps_hi = orm.Float(0.2)
    with pytest.raises(ValueError, match='eps_lo'):
        run_get_node(builder)
    with pytest.raises(ValueError, match='pressure_range'):
        ActiveLoopWorkChain.get_builder_from_protocol(codes, COMPOSITION, pressure_range='XP')


def test_convergence_only_at_the_last_stage():
    kwargs = {'threshold': 0.9, 'patience': 2}
    # every condition accurate: converged at the last stage, not before it
    assert convergence_reason([0.95, 0.91], 3, 0, at_last_stage=True, **kwargs).startswith('converged: accurate')
    assert convergence_reason([0.95, 0.91], 3, 0, at_last_stage=False, **kwargs) is None
    assert convergence_reason([0.95, 0.89], 3, 0, at_last_stage=True, **kwargs) is None
    # no candidates for `patience` explorations
    assert convergence_reason([0.5], 0, 1, at_last_stage=True, **kwargs) is None
    assert convergence_reason([0.5], 0, 2, at_last_stage=True, **kwargs) == 'converged: no candidates in 2 iteration(s)'
    # ... unless the frames without candidates are mostly beyond eps_hi: nothing to label, but not converged
    assert convergence_reason([0.5], 0, 2, at_last_stage=True, failed=[0.05], **kwargs).startswith('converged')
    assert convergence_reason([0.1], 0, 2, at_last_stage=True, failed=[0.9], **kwargs).startswith('stalled')
    assert 'NOT converged' in convergence_reason([0.1], 0, 2, at_last_stage=True, failed=[0.9], **kwargs)
    assert convergence_reason([0.5], 0, 2, at_last_stage=False, **kwargs) is None
    assert convergence_reason([], 0, 0, at_last_stage=True, **kwargs) is None


def test_packings_take_the_densities_in_turn(codes):
    codes = {**codes, 'engine': codes['oracle']}
    hp = ActiveLoopWorkChain.get_builder_from_protocol(codes, COMPOSITION, protocol='demo', pressure_range='HP')
    lp = ActiveLoopWorkChain.get_builder_from_protocol(codes, COMPOSITION, protocol='demo', pressure_range='LP')
    # HP's packings span the densities of the melt up to its highest pressure; LP's sit at one density
    assert len(densities_of(hp.density)) == hp.number_of_structures.value and max(densities_of(hp.density)) > 3.0
    assert len(densities_of(lp.density)) == 1
    assert densities_of(orm.Float(2.2)) == [2.2]


def test_lp_and_hp_are_one_switch(codes):
    codes = {**codes, 'engine': codes['oracle']}
    lp = ActiveLoopWorkChain.get_builder_from_protocol(codes, COMPOSITION, protocol='paper', pressure_range='LP')
    hp = ActiveLoopWorkChain.get_builder_from_protocol(codes, COMPOSITION, protocol='paper', pressure_range='HP')
    assert {p for s in lp.schedule.get_list() for p in s['pressures']} == {0}
    assert max(p for s in hp.schedule.get_list() for p in s['pressures']) == 70
    assert hp.formula_units.value == 114 and hp.explore.eps_lo.value == 0.15 and hp.explore.eps_hi.value == 0.30


def test_validation_on_fresh_liquid_frames(loop, codes):
    import numpy as np

    from aiida_liqcryst.workflows.validate import ValidateWorkChain

    potentials = dict(loop.outputs.potentials.items())
    builder = ValidateWorkChain.get_builder()
    builder.potentials = potentials
    builder.potential = potentials['model_0']
    builder.dp_code = codes['dp']
    builder.md.code = codes['lmp']
    builder.md.structures = {'melt': loop.base.links.get_outgoing(link_label_filter='initial_labels').one().node.inputs.structures['melt_0']}
    builder.md.conditions = orm.List([{'temperature': 3000.0, 'pressure': 0.0, 'ensemble': 'nvt', 'steps': 60, 'timestep': 0.001,
                                       'dump_every': 10, 'thermo_every': 10, 'seed': 99}])
    builder.md.max_candidates = orm.Int(4)
    # 60 steps of a 100-step model from an unrelaxed random packing keep its close contacts (Si-Si from 1.5 Å):
    # count every frame here; the overlap filter itself is tested in test_explore_md / test_exploration_functions
    builder.md.safe_distance_ratio = orm.Float(0.0)
    builder.label.engine = orm.Str('oracle')
    builder.label.code = codes['oracle']
    builder.label.type_map = orm.List(['O', 'Si'])
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    metrics = node.outputs.metrics.get_dict()
    assert metrics['nframes'] == node.outputs.dataset.nframes == 4
    parity = next(c for c in node.called if c.process_label == 'DeepmdTestCalculation').outputs.parity
    forces = parity.get_array('forces_predicted') - parity.get_array('forces_reference')
    assert metrics['force_rmse'] == pytest.approx(float(np.sqrt(np.mean(forces**2))))
    # the reference labels are the oracle's: the dataset's energies equal dp test's reference column
    reference = parity.get_array('energy_reference')
    frames = node.outputs.dataset.get_frames()
    assert sorted(reference) == pytest.approx(sorted(f['energy'] / len(f['symbols']) for f in frames))
    with node.outputs.parity_plot.as_path() as path:
        assert path.stat().st_size > 10_000


def test_every_iteration_is_scored_on_the_held_out_set(loop, holdout_set):
    """Each iteration's ensemble is tested (dp test) on the reference's own MD frames, which it never trained on."""
    from aiida_liqcryst.workflows.train_ensemble import HOLDOUT_LINK

    holdout = holdout_set.outputs.dataset
    for row in loop.outputs.iterations.get_list():
        ensemble = loop.base.links.get_outgoing(link_label_filter=f'train_{row["iteration"]}').one().node
        assert ensemble.inputs.holdout.uuid == holdout.uuid
        errors = []
        for key, potential in ensemble.outputs.potentials.items():
            test = ensemble.base.links.get_outgoing(link_label_filter=HOLDOUT_LINK.format(key=key)).one().node
            assert test.inputs.dataset.uuid == holdout.uuid and test.inputs.potential.uuid == potential.uuid
            errors.append((test.outputs.output_parameters['rmse_e_per_atom'], test.outputs.output_parameters['rmse_f']))
            assert test.outputs.output_parameters['nframes'] == holdout.nframes
            # the held-out frames are not training data
            training = potential.creator
            assert holdout.uuid not in {d.uuid for d in training.inputs.datasets.values()}
        mean_e, mean_f = np.mean(errors, axis=0)
        assert row['rmse_e_holdout'] == pytest.approx(mean_e) and row['rmse_f_holdout'] == pytest.approx(mean_f)
        assert 0 < row['rmse_f_holdout'] < 50


def test_production_model_trains_on_the_final_dataset(loop, holdout_set):
    from aiida_liqcryst.workflows.active_loop import PRODUCTION_LINK

    from .conftest import TINY_PARAMETERS

    production = loop.base.links.get_outgoing(link_label_filter=PRODUCTION_LINK).one().node
    assert production.is_finished_ok
    assert sorted(loop.outputs.production) == ['model_0', 'summary']
    calc = loop.outputs.production.model_0.creator
    assert calc.inputs.datasets.data.uuid == loop.outputs.dataset.uuid
    # started from the final ensemble's model_0 (reuse), with the production protocol's parameters
    assert calc.inputs.restart_mode.value == 'init_model'
    assert calc.inputs.restart_from.uuid == loop.outputs.potentials.model_0.creator.outputs.remote_folder.uuid
    assert calc.inputs.parameters['training']['numb_steps'] == TINY_PARAMETERS['training']['numb_steps']
    summary = loop.outputs.production.summary.get_dict()
    assert summary['number_of_models'] == 1
    assert summary['models']['model_0']['nframes_holdout'] == holdout_set.outputs.dataset.nframes
    assert summary['rmse_f_holdout_mean'] == pytest.approx(summary['models']['model_0']['rmse_f_holdout'])


def test_trust_from_holdout_validated(aiida_profile):
    from aiida_liqcryst.workflows.active_loop import validate_inputs, validate_trust_from_holdout

    assert validate_trust_from_holdout(orm.Dict({'lo': 1.0, 'hi': 3.0}), None) is None
    assert 'lo < hi' in validate_trust_from_holdout(orm.Dict({'lo': 3.0, 'hi': 1.0}), None)
    assert 'exactly the keys' in validate_trust_from_holdout(orm.Dict({'lo': 1.0}), None)
    # the factors scale a measured error: without a held-out set there is nothing to scale
    inputs = {'initial_dataset': orm.Data(), 'trust_from_holdout': orm.Dict({'lo': 1.0, 'hi': 3.0}), 'train': {}}
    assert 'train.holdout' in validate_inputs(inputs, None)
