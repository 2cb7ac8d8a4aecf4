"""Query helpers (aiida_liqcryst.query) on a real tiny ActiveLoop and EOS scan, and the archive round trip.

The loop is the session's ``tiny_loop`` (conftest ``tiny_overrides``: 2 iterations, 2 models, the oracle); the
EOS scan is alpha-quartz only, 5 volumes, short relaxations and no reference scan of its own. The round trip
exports both with ``create_archive``, imports the archive into a fresh profile (``verdi presto`` on a new
AIIDA_PATH, ``verdi archive import``) and runs the helpers there in a subprocess: same answers, by UUID.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_liqcryst import query


VERDI = pathlib.Path(sys.executable).parent / 'verdi'


@pytest.fixture(scope='module')
def loop(tiny_loop):
    assert tiny_loop.is_finished_ok, tiny_loop.exit_status
    return tiny_loop


@pytest.fixture(scope='module')
def eos_scan(codes, loop):
    """A tiny EOSScanWorkChain of the loop's final model_0 (label ``final``): alpha-quartz, 5 volumes."""
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.eos_scan').get_builder_from_protocol(
        codes['ase'], {'final': loop.outputs.potentials.model_0}, polymorphs=['alpha_quartz'],
        overrides={'number_of_points': 5, 'volume_range': [0.95, 1.05], 'reference_eos': False,
                   'relax_settings': {'steps': 4, 'scan_steps': 1, 'fmax': 0.1}},
    )
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    return node


def child(loop, label):
    return loop.base.links.get_outgoing(link_label_filter=label).one().node


def test_labeled_frames_are_the_labels_added(loop):
    rows = loop.outputs.iterations.get_list()
    frames = query.labeled_frames(loop)
    assert len(frames) == sum(r['labels_added'] for r in rows) > 0
    eps_lo, eps_hi = loop.inputs.explore.eps_lo.value, loop.inputs.explore.eps_hi.value
    for row in rows:
        i = row['iteration']
        these = query.labeled_frames(loop.pk, iteration=i)
        assert these == [f for f in frames if f['iteration'] == i]
        assert len(these) == row['labels_added']
        labeling = child(loop, f'label_{i}')
        models = sorted(p.pk for p in child(loop, f'train_{i}').outputs.potentials.values())
        for frame in these:
            assert eps_lo <= frame['max_devi_f'] < eps_hi
            assert frame['condition']['temperature'] == 3000 and frame['condition']['pressure'] in (0, 10)
            assert row['conditions'][f'condition_{frame["condition_index"]}']['condition'] == frame['condition']
            assert frame['labeling'] == labeling.pk
            candidate = orm.load_node(frame['candidate'])
            assert candidate.creator.base.attributes.get('function_name') == 'select_candidates'
            assert labeling.inputs.structures[frame['key']].pk == candidate.pk
            calc = orm.load_node(frame['calculation'])
            assert calc.process_label == 'OracleCalculation' and calc.inputs.structures[frame['key']].pk == candidate.pk
            assert calc.outputs.labels[frame['key']].pk == frame['labels']
            assert calc.outputs.structures[frame['key']].pk == frame['structure']
            md = orm.load_node(frame['md'])
            assert md.process_label == 'ExploreMDCalculation' and frame['models'] == models
            # the frame is the one the model deviation was read at: same deviation, same positions
            assert md.outputs.model_deviation.get_array('max_devi_f')[frame['frame_index']] == pytest.approx(frame['max_devi_f'])
            positions = md.outputs.trajectory.get_step_data(frame['frame_index'])[4]
            np.testing.assert_allclose(np.array([s.position for s in candidate.sites]), positions, atol=1e-8)


def test_initial_frames_and_identifiers(loop):
    initial = child(loop, 'initial_labels')
    frames = query.labeled_frames(loop, include_initial=True)
    first = [f for f in frames if f['iteration'] is None]
    assert len(first) == initial.outputs.dataset.nframes
    assert all(f['candidate'] is None and f['max_devi_f'] is None and f['md'] is None for f in first)
    assert {f['labeling'] for f in first} == {initial.pk}
    assert frames[len(first):] == query.labeled_frames(loop)  # initial frames come first
    by_uuid = query.labeled_frames(loop.uuid, identifier='uuid')
    by_pk = query.labeled_frames(loop)
    assert [orm.load_node(f['candidate']).pk for f in by_uuid] == [f['candidate'] for f in by_pk]
    # models are sorted by the identifier: compare each frame's as a set
    assert [{orm.load_node(m).pk for m in f['models']} for f in by_uuid] == [set(f['models']) for f in by_pk]
    assert query.labeled_frames(loop, iteration=7) == []


def test_lineage_of_the_final_model_reaches_the_initial_labels(loop):
    rows = loop.outputs.iterations.get_list()
    potential = loop.outputs.potentials.model_1
    lineage = query.potential_lineage(potential)
    training = potential.creator
    assert lineage['potential'] == potential.pk and lineage['training'] == training.pk
    assert (lineage['loop'], lineage['iteration'], lineage['model']) == (loop.pk, 1, 'model_1')
    assert lineage['datasets'] == {'data': training.inputs.datasets['data'].pk}
    assert lineage['nframes'] == rows[1]['dataset_size'] == len(lineage['frames'])
    assert lineage['external_datasets'] == []
    # the initial labels, then the frames labeled in iteration 0 (proposed by iteration 0's models)
    initial = child(loop, 'initial_labels')
    assert sum(f['iteration'] is None for f in lineage['frames']) == initial.outputs.dataset.nframes
    assert [f for f in lineage['frames'] if f['iteration'] is not None] == query.labeled_frames(loop, iteration=0)
    assert lineage['labelings'] == sorted([initial.pk, child(loop, 'label_0').pk])
    assert lineage['models'] == sorted(p.pk for p in child(loop, 'train_0').outputs.potentials.values())
    assert lineage['md'] == sorted({f['md'] for f in query.labeled_frames(loop, iteration=0)})
    # with reuse_models (tiny_overrides sets it) iteration 1 started from the weights of iteration 0's model_1
    previous = child(loop, 'train_0').outputs.potentials.model_1.creator.pk
    assert lineage['init_model'] == (previous if loop.inputs.reuse_models.value else None)

    first = query.potential_lineage(child(loop, 'train_0').outputs.potentials.model_0.uuid, identifier='uuid')
    assert first['iteration'] == 0 and first['loop'] == loop.uuid and first['init_model'] is None
    assert len(first['frames']) == first['nframes'] == initial.outputs.dataset.nframes
    assert first['models'] == first['md'] == []
    with pytest.raises(ValueError, match='not made by a training'):
        query.potential_lineage(loop.outputs.dataset)


def test_iteration_table_rows(loop):
    stored = loop.outputs.iterations.get_list()
    rows = query.iteration_table(loop)
    assert [r['iteration'] for r in rows] == [0, 1]
    for row, original in zip(rows, stored):
        assert {k: v for k, v in row.items() if k != 'min_accurate_fraction'} == original
        assert row['min_accurate_fraction'] == min(c['accurate_fraction'] for c in original['conditions'].values())
    flat = query.iteration_table(loop.uuid, per_condition=True)
    assert len(flat) == 4 and [(r['iteration'], r['pressure']) for r in flat] == [(0, 0.0), (0, 10.0), (1, 0.0), (1, 10.0)]
    assert all(r['frames'] == 14 and r['temperature'] == 3000.0 and 'conditions' not in r for r in flat)
    assert sum(r['selected'] for r in flat if r['iteration'] == 0) == stored[0]['labels_added']


def test_eos_results_of_a_potential(loop, eos_scan):
    potential = loop.outputs.potentials.model_0
    results = query.eos_results(potential)
    assert len(results) == 1
    result = results[0]
    assert (result['workchain'], result['exit_status'], result['label']) == (eos_scan.pk, 0, 'final')
    assert result['table'] == eos_scan.outputs.tables.final.pk and result['curves'] == eos_scan.outputs.curves.final.pk
    assert result['figure'] == eos_scan.outputs.figures.final.pk
    assert result['phases'] == eos_scan.outputs.tables.final.get_dict()['phases']
    assert set(result['phases']) == {'alpha_quartz'} and result['energy_zero'] == 'alpha_quartz'
    assert query.eos_results(loop.outputs.potentials.model_1) == []


def test_wrong_nodes_and_identifiers_are_rejected(loop, eos_scan):
    with pytest.raises(TypeError, match='ActiveLoopWorkChain'):
        query.labeled_frames(eos_scan)
    with pytest.raises(TypeError, match='ActiveLoopWorkChain'):
        query.iteration_table(loop.outputs.dataset.pk)
    with pytest.raises(ValueError, match='identifier'):
        query.labeled_frames(loop, identifier='label')


ANSWERS_SCRIPT = """
import json, sys
from aiida import load_profile
load_profile(sys.argv[1])
from aiida_liqcryst import query
loop, final, first = sys.argv[2:5]
print(json.dumps({
    'frames': query.labeled_frames(loop, include_initial=True, identifier='uuid'),
    'lineage': query.potential_lineage(final, identifier='uuid'),
    'first': query.potential_lineage(first, identifier='uuid'),
    'eos': query.eos_results(final, identifier='uuid'),
    'table': query.iteration_table(loop, per_condition=True),
}))
"""


def answers(loop, final, first) -> dict:
    """The helpers' answers by UUID, through JSON (as the subprocess gives them)."""
    return json.loads(json.dumps({
        'frames': query.labeled_frames(loop, include_initial=True, identifier='uuid'),
        'lineage': query.potential_lineage(final, identifier='uuid'),
        'first': query.potential_lineage(first, identifier='uuid'),
        'eos': query.eos_results(final, identifier='uuid'),
        'table': query.iteration_table(loop, per_condition=True),
    }))


def test_archive_round_trip_into_a_fresh_profile(loop, eos_scan, tmp_path):
    from aiida.tools.archive import create_archive
    from aiida.tools.archive.abstract import get_format

    archive = create_archive([loop, eos_scan], filename=tmp_path / 'study.aiida')
    with get_format().open(archive, 'r') as reader:
        counts = {'nodes': reader.querybuilder().append(orm.Node).count()}
    assert counts['nodes'] > 200
    print(f'archive {archive.stat().st_size / 1e6:.1f} MB, {counts["nodes"]} nodes')

    final, first = loop.outputs.potentials.model_0, child(loop, 'train_0').outputs.potentials.model_0
    expected = answers(loop.uuid, final.uuid, first.uuid)
    assert expected['eos'] and expected['lineage']['frames'] and expected['frames']

    env = {**os.environ, 'AIIDA_PATH': str(tmp_path / 'fresh')}
    env.pop('AIIDA_PROFILE', None)

    def run(*command):
        result = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    run(VERDI, 'presto', '--profile-name', 'fresh', '--use-zeromq')
    run(VERDI, '-p', 'fresh', 'archive', 'import', archive)
    imported = json.loads(run(sys.executable, '-c', ANSWERS_SCRIPT, 'fresh', loop.uuid, final.uuid, first.uuid))
    assert imported == expected
