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
    assert tasks == ['relax'] * GENERATIONS + ['label']
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
    relabeled = calcs[-1].inputs.structures
    assert 'potential' not in calcs[-1].inputs  # the reference (oracle)
    assert len(relabeled) == min(len(ranked), 4) == metrics['all']['n']
    assert set(ranked[:2]) <= set(relabeled)
    for key in ('rmse', 'mae', 'max_abs_error'):
        assert math.isfinite(metrics['all'][key]) and metrics['all'][key] >= 0
    assert metrics['all']['pearson_r'] is None or -1 <= metrics['all']['pearson_r'] <= 1
    assert metrics['window_ev_per_atom'] == 1.0 and metrics['window']['n'] == metrics['n_window'] >= 1
    energies = results['relabel_energies']
    oracle = calcs[-1].outputs.output_parameters['structures']
    key = metrics['keys'][0]
    assert energies.get_array('reference')[0] == pytest.approx(oracle[key]['energy'] / oracle[key]['natoms'])
    diff = energies.get_array('potential') - energies.get_array('reference')
    assert metrics['all']['rmse'] == pytest.approx(np.sqrt(np.mean(diff**2)))
    png = results['relabel_plot'].get_content(mode='rb')
    assert png[:8] == b'\x89PNG\r\n\x1a\n'

    comparison = results['polymorph_comparison'].get_dict()
    assert comparison['closest'] in comparison['similarities']
    assert results['rdfs'].get_array('r').shape == results['rdfs'].get_array('found_SiO').shape
