"""StudyWorkChain at test scale (real dp, lmp, oracle, ASE): LP and HP loops scored on one held-out set, their
production models through E(V) and the searches, and the report made from the graph alone."""

import json

import numpy as np

import pytest
from aiida import orm

from aiida_liqcryst.analysis import study as analysis
from aiida_liqcryst.deepmd.calculations.train import check_parameters
from aiida_liqcryst.deepmd.data.dataset import frame_density
from aiida_liqcryst.workflows.study import LOOP_LINKS, StudyWorkChain, validate_holdout_densities

from .conftest import COMPOSITION, TINY_PRODUCTION, tiny_overrides

TINY_LOOP = tiny_overrides(
    max_iterations=1, production=TINY_PRODUCTION, trust_from_holdout={'lo': 1.0, 'hi': 3.0},
    schedule={stage: [{'temperatures': [3000], 'pressures': pressures, 'steps': 40, 'dump_every': 10}]
              for stage, pressures in (('LP', [0]), ('HP', [0, 10]))},
)
TINY_STUDY = {
    'holdout_densities': {'LP': [2.0, 2.6]},  # of TINY_MELT's 2.3 and 3.0 g/cm^3: LP is scored at 2.3 only
    'loop': {'overrides': TINY_LOOP},
    'eos': {'polymorphs': ['stishovite'], 'overrides': {
        'number_of_points': 5, 'volume_range': [0.94, 1.06], 'relax_settings': {'steps': 8, 'scan_steps': 2, 'fmax': 0.05}}},
    'search': {'pressures': [0.0, 10.0], 'overrides': {
        'formula_units': [1, 2], 'population_size': 4, 'generations': 1, 'stagnation': {'generations': 0, 'tolerance': 0.001},
        'relax_settings': {'fmax': 0.1, 'steps': 15}, 'relabel': {'top_k': 2, 'random_sample': 2}}},
}


def study_codes(codes):
    return {**codes, 'engine': codes['oracle']}


def test_study_protocol_passes_argcheck_and_the_validators(codes, holdout_set):
    builder = StudyWorkChain.get_builder_from_protocol(study_codes(codes), COMPOSITION, protocol='study')
    assert StudyWorkChain.spec().inputs.validate(builder._inputs(prune=True)) is None
    for label in LOOP_LINKS:
        loop = builder[label.lower()]
        for namespace in ('train', 'production'):
            train = loop[namespace]['train']['train']
            assert check_parameters(train['parameters'].get_dict(), {}, {}, train['backend'].value) is None
        assert loop['trust_from_holdout'].get_dict() == {'lo': 1.0, 'hi': 3.0}
        assert loop['production']['train']['train']['compress'].value is True
        assert len(loop['production']['seeds'].get_list()) == 1
    assert builder.lp.schedule.get_list()[0]['pressures'] == [0]
    assert max(builder.hp.schedule.get_list()[0]['pressures']) >= 50  # where the melt holds octahedral Si
    assert len(builder.eos.structures) == 11 and builder.eos.run_vdos.value
    assert builder.search_pressures.get_list() == [0.0, 10.0]
    # one held-out set or the other, not both, not none
    builder.holdout_dataset = holdout_set.outputs.dataset
    assert 'either' in StudyWorkChain.spec().inputs.validate(builder._inputs(prune=True)).message


@pytest.fixture(scope='module')
def tiny_study(codes, holdout_set):
    from aiida.engine import run_get_node

    builder = StudyWorkChain.get_builder_from_protocol(study_codes(codes), COMPOSITION, protocol='demo',
                                                       overrides=TINY_STUDY, holdout_dataset=holdout_set.outputs.dataset)
    _, node = run_get_node(builder)
    return node


def test_tiny_study_reaches_every_step(tiny_study, holdout_set):
    assert tiny_study.is_finished_ok, tiny_study.exit_status
    holdout = holdout_set.outputs.dataset
    assert tiny_study.outputs.holdout.uuid == holdout.uuid
    eos = tiny_study.base.links.get_outgoing(link_label_filter='eos').one().node
    for label, link in LOOP_LINKS.items():
        loop = tiny_study.base.links.get_outgoing(link_label_filter=link).one().node
        assert loop.is_finished_ok
        # scored on the study's held-out set, trust levels from that score
        row = loop.outputs.iterations.get_list()[0]
        assert row['eps_lo'] == pytest.approx(row['rmse_f_holdout']) and row['eps_hi'] == pytest.approx(3 * row['rmse_f_holdout'])
        # the production model (not the ensemble) goes on to the E(V) step
        assert eos.inputs.potentials[label].uuid == loop.outputs.production.model_0.uuid
    assert set(eos.outputs.tables) == {'LP', 'HP'}
    # LP's held-out set: the study's frames within its densities, selected with provenance; HP's: all of them
    loops = {label: tiny_study.base.links.get_outgoing(link_label_filter=link).one().node for label, link in LOOP_LINKS.items()}
    assert loops['HP'].inputs.train.holdout.uuid == holdout.uuid
    lp_holdout = loops['LP'].inputs.train.holdout
    assert lp_holdout.creator.inputs.dataset.uuid == holdout.uuid
    densities = [frame_density(frame) for frame in holdout.get_frames()]
    assert lp_holdout.nframes == sum(2.0 <= d <= 2.6 for d in densities) and 0 < lp_holdout.nframes < holdout.nframes
    assert all(2.0 <= frame_density(frame) <= 2.6 for frame in lp_holdout.get_frames())
    searches = [tiny_study.base.links.get_outgoing(link_label_filter=f'search_{i}').one().node for i in range(2)]
    assert [s.inputs.pressure.value for s in searches] == [0.0, 10.0]
    hp = tiny_study.base.links.get_outgoing(link_label_filter=LOOP_LINKS['HP']).one().node
    assert all(s.inputs.potential.uuid == hp.outputs.production.model_0.uuid for s in searches)


def test_headlines_are_the_childrens_numbers(tiny_study):
    headlines = tiny_study.outputs.headlines.get_dict()['headlines']
    hp = tiny_study.base.links.get_outgoing(link_label_filter=LOOP_LINKS['HP']).one().node
    summary = hp.outputs.production.summary.get_dict()
    assert headlines['liquid_force_rmse_ev_a'] == pytest.approx(summary['rmse_f_holdout_mean'])
    assert headlines['liquid_energy_rmse_mev_atom'] == pytest.approx(1e3 * summary['rmse_e_holdout_mean'])
    eos = tiny_study.base.links.get_outgoing(link_label_filter='eos').one().node
    row = eos.outputs.tables['HP']['phases']['stishovite']
    if row['delta_v0_percent'] is not None:
        assert headlines['eos_hp_max_abs_dv0_percent'] == pytest.approx(abs(row['delta_v0_percent']))
    search = tiny_study.base.links.get_outgoing(link_label_filter='search_1').one().node
    ranking = search.outputs.ranking.get_dict()
    best = ranking['structures'][ranking['ranked'][0]]['space_group']
    assert headlines['search_10gpa_best_space_group'] == analysis.space_group_number(best)
    targets = tiny_study.outputs.headlines.get_dict()['targets']
    assert set(targets) == set(analysis.TARGETS)
    # a tiny model misses the liquid target, and the report must say so
    assert targets['liquid_force_rmse_ev_a']['met'] is False


def test_report_from_the_graph(tiny_study, tmp_path):
    from aiida_liqcryst.report import STUDY_JSON_KEYS, study_report

    lines = []
    data = study_report(tiny_study, output=tmp_path, echo=lines.append)
    stored = json.loads((tmp_path / 'study.json').read_text())
    assert list(stored)[: len(STUDY_JSON_KEYS)] == list(STUDY_JSON_KEYS)
    assert stored['liquid_force_rmse_ev_a'] == pytest.approx(data['liquid_force_rmse_ev_a'])
    assert stored['wall_minutes'] > 0
    text = (tmp_path / 'report.txt').read_text()
    assert 'LP active loop' in text and 'HP active loop' in text and 'stishovite' in text and 'MISSED' in text
    # held-out errors per (density, temperature) of the reference melt: every frame found its condition
    conditions = text.split('per condition of the reference melt')[1].split('\n\n')[0]
    assert '?' not in conditions and conditions.count('HP ') == 4 and conditions.count('LP ') == 2
    assert all(' 2.3 ' in line for line in conditions.splitlines() if line.strip().startswith('LP '))
    for name in ('fig1_parity_HP.png', 'fig1_parity_LP.png', 'fig2_ev_LP_HP.png', 'fig3_relabel_0GPa.png'):
        assert (tmp_path / name).stat().st_size > 10000, name
    # the timeline: every step of both loops and the crystals, each after the step it waits for
    steps = stored['timeline_minutes']
    for label in ('LP', 'HP'):
        assert f'{label} iteration 0 training' in steps and f'{label} production training' in steps
        order = [steps.get(f'{label} pre-melt'), steps[f'{label} initial labels'], steps[f'{label} iteration 0 training'],
                 steps[f'{label} iteration 0 exploration'], steps[f'{label} production training'],
                 steps['E(V) of the polymorphs']]
        order = [step for step in order if step is not None]
        assert all(a[1] <= b[0] for a, b in zip(order, order[1:])), order
    assert 'held-out melt' not in steps  # the held-out set was given, not made
    assert all(0 <= start <= end <= stored['wall_minutes'] for start, end in steps.values())
    assert 'timeline (minutes' in text and 'search at 0 GPa' in text


def test_holdout_densities_are_checked_and_an_empty_selection_stops_the_study(codes, holdout_set):
    from aiida.engine import run_get_node

    assert validate_holdout_densities(orm.Dict({'LP': [2.0, 2.6]}), None) is None
    for bad in ({'XP': [2.0, 2.6]}, {'LP': [2.6, 2.0]}, {'LP': [0, 2.0]}, {'LP': [2.0]}, {'HP': ['a', 3]}):
        assert validate_holdout_densities(orm.Dict(bad), None) is not None, bad
    builder = StudyWorkChain.get_builder_from_protocol(study_codes(codes), COMPOSITION, protocol='demo', overrides=TINY_STUDY,
                                                       holdout_dataset=holdout_set.outputs.dataset)
    builder.holdout_densities = orm.Dict({'LP': [5.0, 6.0]})  # no melt frame is that dense
    _, node = run_get_node(builder)
    assert node.exit_status == StudyWorkChain.exit_codes.ERROR_HOLDOUT_EMPTY.status
    assert not node.base.links.get_outgoing(link_label_filter=LOOP_LINKS['LP']).all()  # nothing launched


def test_headline_functions():
    table = {'phases': {'a': {'delta_v0_percent': -2.0, 'relative_energy_error': 30.0, 'curve_rmse': 4.0},
                        'b': {'delta_v0_percent': 5.0, 'relative_energy_error': -40.0, 'curve_rmse': None}}}
    eos = analysis.eos_headlines(table)
    assert eos['max_abs_dv0_percent'] == 5.0 and eos['max_abs_de_mev_atom'] == 40.0 and eos['worst_de_phase'] == 'b'
    ranking = {'ranked': ['x', 'y'], 'structures': {'x': {'space_group': 227, 'si_coordination': 4.0},
                                                    'y': {'space_group': 15, 'si_coordination': 6.0}}}
    found = analysis.search_headlines(ranking)
    assert found['best_space_group'] == 227 and found['known_low_pressure_in_top'] == [['beta_cristobalite']]
    # C2/c with octahedral Si is not coesite
    assert analysis.search_headlines({'ranked': ['y'], 'structures': ranking['structures']})['known_low_pressure_in_top'] == []
    pooled = analysis.pooled_relabel_metrics(
        [{'potential': [0.0, 0.1, 2.0], 'reference': [0.0, 0.12, 2.5], 'enthalpy': [0.0, 0.1, 2.0]}], window=1.0)
    assert pooled['n'] == 3 and pooled['n_window'] == 2
    assert pooled['rmse_window_mev_atom'] == pytest.approx(1e3 * (0.02 ** 2 / 2) ** 0.5)
    verdicts = analysis.compare_with_targets({'liquid_force_rmse_ev_a': 0.3, 'relabel_pearson_r': 0.99,
                                              'search_10gpa_best_space_group': 136})
    assert verdicts['liquid_force_rmse_ev_a']['met'] is False and verdicts['relabel_pearson_r']['met'] is True
    assert verdicts['search_10gpa_best_space_group']['met'] is True and verdicts['eos_hp_max_abs_dv0_percent']['met'] is None


def test_space_group_labels_compare_as_numbers():
    assert analysis.space_group_number('P4_2/mnm (136)') == 136 and analysis.space_group_number(136) == 136
    ranking = {'ranked': ['s'], 'structures': {'s': {'space_group': 'P4_2/mnm (136)', 'si_coordination': 6.0}}}
    headlines = analysis.search_headlines(ranking)
    assert headlines['best_space_group'] == 136
    assert analysis.compare_with_targets({'search_10gpa_best_space_group': 136})['search_10gpa_best_space_group']['met']


def test_errors_by_condition():
    from aiida_liqcryst.analysis.study import errors_by_condition

    rng = np.random.default_rng(1)
    natoms = [3, 3, 2]
    forces = rng.normal(size=(8, 3))
    shift = np.zeros((8, 3))
    shift[6:] = 0.5  # only the last frame's forces are off, by 0.5 per component
    rows = errors_by_condition([('a', 1), ('a', 1), ('b', 2)], [-7.0, -7.1, -6.0], [-7.01, -7.07, -6.0],
                               forces, forces + shift, natoms)
    assert [r['condition'] for r in rows] == [('a', 1), ('b', 2)]
    assert rows[0]['nframes'] == 2 and rows[0]['rmse_e_mev_atom'] == pytest.approx(np.sqrt((10**2 + 30**2) / 2))
    assert rows[0]['rmse_f_ev_a'] == 0 and rows[1]['rmse_f_ev_a'] == pytest.approx(0.5)
    assert rows[1]['force_rms_ev_a'] == pytest.approx(np.sqrt(np.mean(forces[6:] ** 2)))
    with pytest.raises(ValueError, match='do not match'):
        errors_by_condition(['a'], [-7.0], [-7.0], forces, forces, [3])
