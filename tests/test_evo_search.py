"""EvoSearchWorkChain: a real tiny search with a tiny DeePMD potential (real dp) and the oracle as reference."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from .conftest import TINY_PARAMETERS

POPULATION = 4
GENERATIONS = 2


@pytest.fixture(scope='module')
def tiny_potential(aiida_profile, codes, sio2_dataset):
    """A tiny DeePMD model trained for 100 steps on the six melt frames by DeepmdTrainCalculation (real dp)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters['model']['descriptor']['sel'] = [48, 24]  # relaxed random crystals can be dense
    results, node = run_get_node(
        CalculationFactory('liqcryst.deepmd.train'), code=codes['dp'], datasets={'data': sio2_dataset},
        parameters=orm.Dict(parameters), seed=orm.Int(11),
    )
    assert node.is_finished_ok, node.exit_message
    return results['potential']


def _builder(codes, potential, **overrides):
    from aiida.plugins import WorkflowFactory

    EvoSearch = WorkflowFactory('liqcryst.evo_search')
    protocol = {
        'formula_units': [1, 2], 'population_size': POPULATION, 'generations': GENERATIONS,
        'stagnation': {'generations': 0, 'tolerance': 0.001},
        'relax_settings': {'fmax': 0.1, 'steps': 15},
        'relabel': {'top_k': 2, 'random_sample': 2},
        'seed': 7,
    }
    builder = EvoSearch.get_builder_from_protocol(codes['ase'], potential, {'Si': 1, 'O': 2}, pressure=5.0, overrides=protocol)
    for key, value in overrides.items():
        builder[key] = value
    return builder


def test_protocols(aiida_profile, codes, tiny_potential):
    from aiida.plugins import WorkflowFactory

    EvoSearch = WorkflowFactory('liqcryst.evo_search')
    assert set(EvoSearch.get_available_protocols()) == {'demo', 'paper'}
    paper = EvoSearch.get_builder_from_protocol(codes['ase'], tiny_potential, protocol='paper', pressure=10.0)
    assert paper.formula_units.get_list() == [2, 8] and paper.pressure.value == 10.0
    assert paper.population_size.value > EvoSearch.get_builder_from_protocol(codes['ase'], tiny_potential).population_size.value


def test_bad_inputs_rejected_before_running(aiida_profile, codes, tiny_potential):
    from aiida import orm
    from aiida.engine import run

    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    cases = [
        ({'population_size': orm.Int(1)}, 'population_size'),
        ({'composition': orm.Dict({'Si': 1, 'Xx': 2})}, "unknown element 'Xx'"),
        ({'composition': orm.Dict({'Si': 1, 'C': 2})}, r"elements \['C'\] are not in the type_map"),
        ({'formula_units': orm.List([4, 2])}, 'formula_units'),
        ({'fractions': orm.Dict({'heredity': 0.9, 'mutation': 0.3, 'random': 0.2})}, 'sum to 1'),
        ({'relax_settings': orm.Dict({'pressure': 3.0})}, 'relax_settings'),
        ({'relax_settings': orm.Dict({'steps': -1})}, 'relax_settings'),
        ({'variation': orm.Dict({'volume_factor': -1})}, 'variation'),
        ({'generations': orm.Int(0)}, 'generations'),
    ]
    for overrides, message in cases:
        with pytest.raises(ValueError, match=message):
            run(_builder(codes, tiny_potential, **overrides))
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_tiny_search(aiida_profile, codes, tiny_potential):
    """Two generations of four candidates (3-6 atoms) relaxed at 5 GPa, re-labeled with the oracle."""
    from aiida import orm
    from aiida.engine import run_get_node

    results, node = run_get_node(_builder(codes, tiny_potential))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)

    # one batched relaxation per generation, one re-labeling
    calcs = sorted((c for c in node.called if c.process_label == 'AseCalculation'), key=lambda c: c.ctime)
    tasks = [c.inputs.settings['task'] for c in calcs]
    assert tasks == ['relax'] * GENERATIONS
    for calc in calcs[:GENERATIONS]:
        assert len(calc.inputs.structures) == POPULATION
        assert calc.inputs.settings['pressure'] == 5.0 and calc.inputs.settings['cell'] is True
        assert calc.inputs.potential.uuid == tiny_potential.uuid

    ranking = results['ranking'].get_dict()
    ranked = ranking['ranked']
    structures = results['structures']
    assert len(structures) == len(ranked) >= 2
    enthalpies = [ranking['structures'][k]['enthalpy'] for k in ranked]
    assert all(math.isfinite(h) for h in enthalpies)
    assert enthalpies == sorted(enthalpies)
    for rank, key in enumerate(ranked):
        structure = structures[f'rank_{rank:03d}']
        row = ranking['structures'][key]
        assert structure.base.extras.get('key') == key
        # the enthalpy is the relaxation's own: H = E + PV of that structure, per atom
        calc = next(c for c in calcs[:GENERATIONS] if key in c.outputs.structures)
        assert calc.outputs.structures[key].uuid == structure.uuid
        entry = calc.outputs.output_parameters['structures'][key]
        assert row['enthalpy'] == pytest.approx(entry['enthalpy'] / len(structure.sites))
        pv = 5.0 * 1e9 * structure.get_cell_volume() * 1e-30 / 1.602176634e-19 / len(structure.sites)
        assert row['enthalpy'] == pytest.approx(row['energy'] + pv, rel=1e-6)
        assert len(row['space_groups']) == 3 and row['si_coordination'] is not None
        n = len(structure.sites) // 3
        assert sorted(structure.get_site_kindnames()) == sorted(['Si'] * n + ['O'] * 2 * n)
    # no two ranked structures are duplicates
    from aiida_liqcryst.evolution.population import structure_matcher

    matcher = structure_matcher()
    pmg = [structures[f'rank_{r:03d}'].get_pymatgen() for r in range(len(ranked))]
    for i in range(len(pmg)):
        for j in range(i + 1, len(pmg)):
            assert abs(enthalpies[i] - enthalpies[j]) >= 0.05 or not matcher.fit(pmg[i], pmg[j])
    assert results['best_structure'].uuid == structures['rank_000'].uuid

    summary = results['summary'].get_dict()
    assert len(summary['generations']) == GENERATIONS
    history = summary['best_history']
    assert all(b <= a + 1e-12 for a, b in zip(history, history[1:]))  # the best never gets worse
    assert history[-1] == pytest.approx(enthalpies[0])
    generation_bests = [g['generation_best_enthalpy'] for g in summary['generations']]
    assert history[-1] == pytest.approx(min(h for h in generation_bests if h is not None))
    assert summary['relaxations'] == POPULATION * GENERATIONS
    assert summary['relaxations_per_minute'] > 0
    assert summary['stop_reason'] == 'maximum number of generations'
    second = summary['generations'][1]
    assert set(second['operators'].values()) - {'random'}  # generation 1 has children of the population
    assert summary['best_space_group'] == ranking['structures'][ranked[0]]['space_group']

    # generation 1's candidates are made from generation 0's relaxed structures (provenance)
    origin = orm.load_node(calcs[1].inputs.structures[next(iter(calcs[1].inputs.structures))].pk).creator
    assert origin.process_label == 'create_generation'
    parents = {n.uuid for n in origin.base.links.get_incoming(node_class=orm.StructureData).all_nodes()}
    assert parents and parents <= {s.uuid for s in calcs[0].outputs.structures.values()}

    # re-labeling with the reference
    metrics = results['relabel_metrics'].get_dict()
    [labeling] = [c for c in node.called if c.process_label == 'LabelWorkChain']  # the reference engine's route
    assert labeling.inputs.engine.value == 'oracle' and labeling.is_finished_ok
    relabeled = labeling.inputs.structures
    assert {key: s.uuid for key, s in relabeled.items()} == {
        key: structures[f'rank_{ranked.index(key):03d}'].uuid for key in relabeled}  # the relaxed geometries
    assert len(relabeled) == min(len(ranked), 4) == metrics['all']['n']
    assert set(ranked[:2]) <= set(relabeled)
    for key in ('rmse', 'mae', 'max_abs_error'):
        assert math.isfinite(metrics['all'][key]) and metrics['all'][key] >= 0
    assert metrics['all']['pearson_r'] is None or -1 <= metrics['all']['pearson_r'] <= 1
    assert metrics['window_ev_per_atom'] == 1.0 and metrics['window']['n'] == metrics['n_window'] >= 1
    energies = results['relabel_energies']
    key = metrics['keys'][0]
    label = labeling.outputs.labels[key]
    assert energies.get_array('reference')[0] == pytest.approx(label.get_array('energy')[0] / len(relabeled[key].sites))
    diff = energies.get_array('potential') - energies.get_array('reference')
    assert metrics['all']['rmse'] == pytest.approx(np.sqrt(np.mean(diff**2)))
    png = results['relabel_plot'].get_content(mode='rb')
    assert png[:8] == b'\x89PNG\r\n\x1a\n'

    comparison = results['polymorph_comparison'].get_dict()
    assert comparison['closest'] in comparison['similarities']
    assert results['rdfs'].get_array('r').shape == results['rdfs'].get_array('found_SiO').shape


def test_update_pool_records_failures_and_duplicates(aiida_profile):
    """The ranking calcfunction on known crystals: a failed and a collapsed relaxation are listed and skipped, a
    supercell copy of quartz is a duplicate, and a later generation's duplicate of a pool member is reported."""
    from aiida import orm

    from aiida_liqcryst.structures import polymorphs
    from aiida_liqcryst.workflows.evo_search import update_pool

    quartz = polymorphs.get_atoms('alpha_quartz', primitive=True)  # 9 atoms
    stishovite = polymorphs.get_atoms('stishovite', primitive=True)  # 6 atoms
    supercell = quartz.repeat((1, 1, 2))
    collapsed = stishovite.copy()  # two O at 1.0 Å, as in a hole of SevenNet-0 found by a search (-130 eV/atom)
    oxygens = [k for k, s in enumerate(collapsed.get_chemical_symbols()) if s == 'O']
    collapsed.positions[oxygens[1]] = collapsed.positions[oxygens[0]] + [1.0, 0.0, 0.0]
    structures = {'g00_c00': quartz, 'g00_c01': stishovite, 'g00_c02': collapsed, 'g00_c03': supercell, 'g00_c04': quartz}

    def ok(atoms, enthalpy):
        n = len(atoms)
        return {'status': 'ok', 'error': None, 'energy': (enthalpy - 0.1) * n, 'enthalpy': enthalpy * n,
                'volume': atoms.get_volume(), 'natoms': n, 'steps': 10, 'converged': True}

    summary = {'structures': {
        'g00_c00': ok(quartz, -9.00), 'g00_c01': ok(stishovite, -9.20), 'g00_c02': ok(collapsed, -12.0),
        'g00_c03': ok(supercell, -8.99), 'g00_c04': {'status': 'failed', 'error': 'FloatingPointError: NaN'},
    }}
    origin = {'generation': 0, 'candidates': {k: {'operator': 'random', 'parents': [], 'info': {}} for k in structures}}
    parameters = orm.Dict({'pressure': 0.0, 'duplicate_tolerance': 0.05, 'collapse_ratio': 0.8})
    outputs = update_pool(
        parameters=parameters, origin=orm.Dict(origin), summary=orm.Dict(summary),
        **{f'new_{k}': orm.StructureData(ase=a) for k, a in structures.items() if k != 'g00_c04'},
    )
    table, report = outputs['table'].get_dict(), outputs['generation'].get_dict()
    assert table['ranked'] == ['g00_c01', 'g00_c00']
    assert set(report['failed']) == {'g00_c04'} and 'NaN' in report['failed']['g00_c04']
    assert set(report['rejected']) == {'g00_c02'} and 'collapsed: O-O at 1.00' in report['rejected']['g00_c02']
    assert report['duplicates'] == {'g00_c03': 'g00_c00'}
    assert report['best'] == report['generation_best'] == 'g00_c01'
    assert report['best_space_group'] == 'P4_2/mnm (136)'
    assert table['structures']['g00_c01']['si_coordination'] == pytest.approx(6.0)
    assert table['structures']['g00_c00']['energy'] == pytest.approx(-9.1)

    # generation 1: only a rotated quartz, higher in enthalpy than the pool's quartz: a duplicate of it
    rotated = quartz.copy()
    rotated.rotate(40, 'z', rotate_cell=True)
    origin = {'generation': 1, 'candidates': {'g01_c00': {'operator': 'strain', 'parents': ['g00_c00'], 'info': {}}}}
    pool = {f'pool_{k}': orm.StructureData(ase=structures[k]) for k in table['ranked']}
    outputs = update_pool(
        parameters=parameters, origin=orm.Dict(origin), summary=orm.Dict({'structures': {'g01_c00': ok(rotated, -8.98)}}),
        new_g01_c00=orm.StructureData(ase=rotated), table=outputs['table'], **pool,
    )
    table, report = outputs['table'].get_dict(), outputs['generation'].get_dict()
    assert table['ranked'] == ['g00_c01', 'g00_c00']
    assert report['duplicates'] == {'g01_c00': 'g00_c00'} and report['unique_new'] == 0
    assert report['generation_best'] == 'g01_c00' and report['generation_best_enthalpy'] == pytest.approx(-8.98)
    assert report['generation_best_space_group'] == table['structures']['g00_c00']['space_group'] == 'P3_221 (154)'
    assert report['best_enthalpy'] == pytest.approx(-9.20)
