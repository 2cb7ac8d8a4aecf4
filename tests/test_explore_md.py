"""Exploration MD through the AiiDA engine: real ``lmp`` with an ensemble of real tiny DeePMD models.

One ExploreMDWorkChain runs three conditions on a 24-atom SiO2 melt: NVT 3000 K, NPT 3000 K / 10 GPa and a
deliberate blow-up (NVT 1e10 K: every atom leaves the box within 10 steps) that must end in truncated
outputs and a restart with half the timestep, without failing the exploration.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import TINY_PARAMETERS

TYPE_MAP = ['O', 'Si']
STEPS = 200
DUMP_EVERY = 10
GOOD_CONDITIONS = [
    {'temperature': 3000.0, 'pressure': 0.0, 'ensemble': 'nvt', 'steps': STEPS, 'timestep': 0.001,
     'dump_every': DUMP_EVERY, 'thermo_every': DUMP_EVERY, 'seed': 11},
    {'temperature': 3000.0, 'pressure': 10.0, 'ensemble': 'npt', 'steps': STEPS, 'timestep': 0.001,
     'dump_every': DUMP_EVERY, 'thermo_every': DUMP_EVERY, 'seed': 12},
]
BLOW_UP = {'temperature': 1.0e10, 'ensemble': 'nvt', 'steps': 100, 'timestep': 0.001, 'dump_every': 10,
           'thermo_every': 10, 'seed': 13}
EPS_LO, EPS_HI = 0.3, 3.0
MAX_CANDIDATES = 3


def write_deepmd_npy(frames, folder: pathlib.Path, type_map) -> None:
    """The labeled frames as one deepmd/npy system (atoms sorted by type; all frames share composition)."""
    coords, boxes, energies, forces, virials = [], [], [], [], []
    for atoms, label in frames:
        types = np.array([type_map.index(s) for s in atoms.get_chemical_symbols()])
        order = np.argsort(types, kind='stable')
        coords.append(atoms.positions[order].ravel())
        boxes.append(atoms.cell.array.ravel())
        energies.append(label['energy'])
        forces.append(np.asarray(label['forces'])[order].ravel())
        virials.append(np.asarray(label['virial']).ravel())
    (folder / 'set.000').mkdir(parents=True)
    np.savetxt(folder / 'type.raw', types[order], fmt='%d')
    (folder / 'type_map.raw').write_text('\n'.join(type_map) + '\n')
    for name, values in {'coord': coords, 'box': boxes, 'energy': energies, 'force': forces, 'virial': virials}.items():
        np.save(folder / 'set.000' / f'{name}.npy', np.array(values))


def _run_all(commands):
    """Run ``(command, cwd)`` pairs concurrently; fail with the log tail of any that fails."""
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'DP_INTRA_OP_PARALLELISM_THREADS': '1', 'DP_INTER_OP_PARALLELISM_THREADS': '1'}
    running = []
    for command, cwd in commands:
        log = open(cwd / 'dp.log', 'a')  # noqa: SIM115 -- closed below
        running.append((subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env), log, cwd))
    for process, log, cwd in running:
        process.wait()
        log.close()
        if process.returncode:
            tail = (cwd / 'dp.log').read_text()[-2000:]
            raise RuntimeError(f'{" ".join(process.args)} failed in {cwd}:\n{tail}')


@pytest.fixture(scope='session')
def tiny_models(melt_frames, tmp_path_factory):
    """Frozen tiny models (``dp --pt train`` 60 steps + ``dp --pt freeze``): two O/Si seeds and one O/Si/Na model.

    Paths by name: ``seed_1``, ``seed_2`` (type_map O, Si) and ``other_map`` (type_map O, Si, Na).
    """
    root = tmp_path_factory.mktemp('tiny_models')
    write_deepmd_npy(melt_frames, root / 'data', TYPE_MAP)
    dp = str(pathlib.Path(sys.executable).parent / 'dp')
    specs = {'seed_1': (1, TYPE_MAP, [24, 12]), 'seed_2': (2, TYPE_MAP, [24, 12]), 'other_map': (3, ['O', 'Si', 'Na'], [24, 12, 2])}
    commands = []
    for name, (seed, type_map, sel) in specs.items():
        folder = root / name
        folder.mkdir()
        parameters = json.loads(json.dumps(TINY_PARAMETERS))
        parameters['model']['type_map'] = type_map
        parameters['model']['descriptor'].update(sel=sel, seed=seed)
        parameters['model']['fitting_net']['seed'] = seed
        batch_size = parameters['training'].pop('batch_size', 1)
        parameters['training'].update(
            numb_steps=60, save_freq=60, disp_freq=20, seed=seed,
            training_data={'systems': [str(root / 'data')], 'batch_size': batch_size},
        )
        (folder / 'input.json').write_text(json.dumps(parameters))
        commands.append(([dp, '--pt', 'train', 'input.json'], folder))
    _run_all(commands)
    _run_all([([dp, '--pt', 'freeze', '-o', 'model.pth'], root / name) for name in specs])
    return {name: root / name / 'model.pth' for name in specs}


@pytest.fixture(scope='session')
def ensemble(aiida_profile, tiny_models):
    """Stored DeepPotentialData of the tiny models, by name."""
    from aiida_liqcryst.deepmd.data.potential import DeepPotentialData

    return {name: DeepPotentialData(path).store() for name, path in tiny_models.items()}


@pytest.fixture(scope='session')
def melt_structure(aiida_profile, melt_frames):
    from aiida import orm

    return orm.StructureData(ase=melt_frames[0][0]).store()


@pytest.fixture(scope='module')
def exploration(ensemble, melt_structure, codes):
    """One ExploreMDWorkChain over the two good conditions and the blow-up (run once for the tests below)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.explore_md').get_builder()
    builder.code = codes['lmp']
    builder.potentials = {'m0': ensemble['seed_1'], 'm1': ensemble['seed_2']}
    builder.structures = {'melt': melt_structure}
    builder.conditions = orm.List([*GOOD_CONDITIONS, BLOW_UP])
    builder.eps_lo = orm.Float(EPS_LO)
    builder.eps_hi = orm.Float(EPS_HI)
    builder.max_candidates = orm.Int(MAX_CANDIDATES)
    builder.selection = orm.Str('fps')
    builder.max_iterations = orm.Int(2)
    _, node = run_get_node(builder)
    return node


def md_runs(node):
    """The ExploreMDBaseWorkChain children by condition index (one structure: run k = condition k)."""
    from aiida.common.links import LinkType

    links = node.base.links.get_outgoing(link_type=LinkType.CALL_WORK, link_label_filter='md_%').all()
    return {int(link.link_label.split('_')[1]): link.node for link in links}


def test_exploration_finishes_despite_the_blow_up(exploration):
    assert exploration.is_finished_ok, exploration.exit_message
    runs = md_runs(exploration)
    assert sorted(runs) == [0, 1, 2]
    assert runs[0].is_finished_ok and runs[1].is_finished_ok
    assert runs[2].exit_status == 310  # unrecoverable after the restart, outputs still attached
    assert 'trajectory' in runs[2].outputs and 'model_deviation' in runs[2].outputs


def test_blow_up_restarts_with_half_the_timestep(exploration):
    from aiida import orm

    base = md_runs(exploration)[2]
    calcs = sorted((c for c in base.called if isinstance(c, orm.CalcJobNode)), key=lambda c: c.ctime)
    assert len(calcs) == 2
    first, second = (c.inputs.parameters.get_dict() for c in calcs)
    assert second['timestep'] == pytest.approx(first['timestep'] / 2)
    assert second['steps'] == 2 * first['steps'] and second['dump_every'] == 2 * first['dump_every']
    for calc, parameters in zip(calcs, (first, second)):
        assert calc.exit_status == 310
        assert 'Lost atoms' in calc.exit_message or 'out of range' in calc.exit_message.lower()
        frames = calc.outputs.trajectory.numsteps
        assert 1 <= frames < parameters['steps'] // parameters['dump_every'] + 1  # truncated, not empty
        assert len(calc.outputs.model_deviation.get_array('max_devi_f')) == frames
        assert calc.outputs.output_parameters['completed'] is False
    # the work chain returns the outputs of the last (shorter timestep) run
    assert base.outputs.trajectory.uuid == calcs[1].outputs.trajectory.uuid


def test_model_deviation_parsed_from_real_output(exploration):
    from aiida_liqcryst.exploration.model_deviation import COLUMNS, read_model_devi

    for index in (0, 1):
        calc = md_runs(exploration)[index].called[0]
        text = calc.outputs.retrieved.base.repository.get_object_content('model_devi.out')
        parsed = read_model_devi(text)
        rows = [line for line in text.splitlines() if line.strip() and not line.startswith('#')]
        assert len(parsed['step']) == len(rows) == STEPS // DUMP_EVERY + 1
        assert list(parsed['step']) == list(range(0, STEPS + 1, DUMP_EVERY))
        output = calc.outputs.model_deviation
        for name in COLUMNS:
            assert np.allclose(output.get_array(name), parsed[name])
        devi = output.get_array('max_devi_f')
        assert np.all(devi >= output.get_array('avg_devi_f')) and np.all(devi > 0)
        trajectory = calc.outputs.trajectory
        assert list(trajectory.get_stepids()) == list(parsed['step'])
        assert sorted(trajectory.symbols) == sorted(['O'] * 16 + ['Si'] * 8)


def test_thermo_and_ensembles(exploration):
    from aiida_liqcryst.exploration.lammps_output import read_thermo

    nvt, npt = (md_runs(exploration)[k].called[0] for k in (0, 1))
    for calc in (nvt, npt):
        thermo = calc.outputs.thermo
        log = calc.outputs.retrieved.base.repository.get_object_content('log.lammps')
        raw = read_thermo(log)
        assert list(thermo.get_array('step')) == list(range(0, STEPS + 1, DUMP_EVERY))
        assert np.allclose(thermo.get_array('press') * 1e4, raw['press'])  # bar -> GPa
        assert np.all(thermo.get_array('density') > 0)
    nvt_vol, npt_vol = nvt.outputs.thermo.get_array('vol'), npt.outputs.thermo.get_array('vol')
    assert np.ptp(nvt_vol) < 1e-6 * nvt_vol[0]
    assert np.ptp(npt_vol) > 1e-3 * npt_vol[0]  # the barostat moves the cell
    cells = npt.outputs.trajectory.get_cells()
    assert not np.allclose(cells[0], cells[-1])
    assert np.allclose(nvt.outputs.trajectory.get_cells()[0], nvt.outputs.trajectory.get_cells()[-1])


def test_statistics_consistent_with_thresholds(exploration):
    from aiida_liqcryst.exploration.model_deviation import classify

    stats = exploration.outputs.statistics.get_dict()
    assert stats['eps_lo'] == pytest.approx(EPS_LO) and stats['eps_hi'] == pytest.approx(EPS_HI)
    runs = md_runs(exploration)
    total_frames = 0
    for index, run in runs.items():
        devi = run.outputs.model_deviation.get_array('max_devi_f')
        c = stats['conditions'][f'condition_{index}']
        labels = classify(devi, EPS_LO, EPS_HI)
        assert c['frames'] == len(devi)
        assert c['accurate'] + c['candidate'] + c['failed'] == c['frames']
        for name in ('accurate', 'candidate', 'failed'):
            assert c[name] == int(np.sum(labels == name))
            assert c[f'{name}_fraction'] == pytest.approx(c[name] / c['frames'])
        assert c['accurate'] == int(np.sum(devi < EPS_LO)) and c['failed'] == int(np.sum(devi >= EPS_HI))
        for q in (10, 50, 90):
            assert c[f'max_devi_f_p{q}'] == pytest.approx(np.percentile(devi, q))
        total_frames += c['frames']
    # frames of the blown-up MD count, flagged as a truncated run
    assert stats['conditions']['condition_2']['truncated_runs'] == 1
    assert stats['conditions']['condition_2']['frames'] >= 1
    assert stats['conditions']['condition_0']['frames'] == STEPS // DUMP_EVERY + 1
    assert stats['total']['frames'] == total_frames
    assert stats['total']['candidate'] == sum(stats['conditions'][f'condition_{k}']['candidate'] for k in runs)


def test_candidates_capped_with_provenance(exploration):
    stats = exploration.outputs.statistics.get_dict()
    candidates = dict(exploration.outputs.candidates.items()) if 'candidates' in exploration.outputs else {}
    usable = stats['total']['candidate'] - stats['total']['too_close']  # overlapping atoms are never picked
    assert len(candidates) == min(MAX_CANDIDATES, usable) == stats['total']['selected']
    runs = md_runs(exploration)
    seen = set()
    for structure in candidates.values():
        extras = structure.base.extras.all
        assert EPS_LO <= extras['max_devi_f'] < EPS_HI
        run = runs[extras['condition_index']]
        assert extras['condition']['seed'] == run.inputs.md.parameters['seed']
        devi = run.outputs.model_deviation.get_array('max_devi_f')
        assert extras['max_devi_f'] == pytest.approx(devi[extras['frame_index']])
        trajectory = run.outputs.trajectory
        assert extras['step'] == trajectory.get_stepids()[extras['frame_index']]
        assert np.allclose(structure.get_ase().positions, trajectory.get_positions()[extras['frame_index']])
        # provenance: the candidate was made by select_candidates from this MD trajectory
        creator = structure.creator
        assert creator.process_label == 'select_candidates'
        assert trajectory.uuid in {n.uuid for n in creator.base.links.get_incoming().all_nodes()}
        assert trajectory.creator.process_type == 'aiida.calculations:liqcryst.explore_md'
        seen.add((extras['condition_index'], extras['frame_index']))
    assert len(seen) == len(candidates)


def test_report_one_line_per_condition(exploration):
    from aiida import orm

    messages = [log.message for log in orm.Log.collection.get_logs_for(exploration)]
    for index in range(3):
        lines = [m for m in messages if f' condition_{index} (' in m]  # report() prefixes `[pk|class|step]:`
        assert len(lines) == 1
        assert 'accurate' in lines[0] and 'candidate' in lines[0] and 'failed' in lines[0]


def test_select_candidates_fps_and_random_on_real_frames(exploration):
    """The calcfunction again on the same MD outputs, with a trust window that surely holds many frames."""
    from aiida import orm

    from aiida_liqcryst.exploration.selection import quotas
    from aiida_liqcryst.workflows.explore_md import select_candidates

    runs = md_runs(exploration)
    md_outputs, info = {}, {}
    for k in (0, 1):
        md_outputs[f'trajectory_{k}'] = runs[k].outputs.trajectory
        md_outputs[f'model_deviation_{k}'] = runs[k].outputs.model_deviation
        info[str(k)] = {'condition': k, 'structure': 'melt', 'truncated': False}
    devi = np.concatenate([md_outputs[f'model_deviation_{k}'].get_array('max_devi_f') for k in (0, 1)])
    lo, hi = float(np.percentile(devi, 10)), float(np.percentile(devi, 95)) + 1e-6
    window = int(np.sum((devi >= lo) & (devi < hi)))
    assert window > 8
    common = dict(eps_lo=orm.Float(lo), eps_hi=orm.Float(hi), max_candidates=orm.Int(6), seed=orm.Int(4),
                  conditions=orm.List(GOOD_CONDITIONS), runs=orm.Dict(info), **md_outputs)
    picked = {}
    for method in ('fps', 'random'):
        result = select_candidates(selection_method=orm.Str(method), **common)
        candidates = [v for k, v in result.items() if k.startswith('candidate_')]
        assert len(candidates) == 6
        frames = {(c.base.extras.get('run'), c.base.extras.get('frame_index')) for c in candidates}
        assert len(frames) == 6  # distinct frames
        assert all(lo <= c.base.extras.get('max_devi_f') < hi for c in candidates)
        assert result['statistics']['total']['candidate'] == window
        # the cap is shared by the two conditions in proportion to their candidate frames
        per_condition = [
            int(np.sum((d >= lo) & (d < hi))) for d in (md_outputs[f'model_deviation_{k}'].get_array('max_devi_f') for k in (0, 1))
        ]
        counts = [sum(1 for run, _ in frames if run == k) for k in (0, 1)]
        assert counts == quotas(per_condition, 6)
        assert [result['statistics']['conditions'][f'condition_{k}']['selected'] for k in (0, 1)] == counts
        picked[method] = frames
    # fps starts from the most uncertain candidate frame
    in_window = np.where((devi >= lo) & (devi < hi), devi, -np.inf)
    best = int(np.argmax(in_window))
    n0 = len(md_outputs['model_deviation_0'].get_array('max_devi_f'))
    assert ((0, best) if best < n0 else (1, best - n0)) in picked['fps']


# -- bad inputs: rejected before anything runs ------------------------------------------------------------


def _count_calcjobs():
    from aiida import orm

    return orm.QueryBuilder().append(orm.CalcJobNode).count()


@pytest.fixture
def explore_inputs(ensemble, melt_structure, codes):
    from aiida import orm

    return {
        'code': codes['lmp'],
        'potentials': {'m0': ensemble['seed_1'], 'm1': ensemble['seed_2']},
        'structures': {'melt': melt_structure},
        'conditions': orm.List(GOOD_CONDITIONS),
    }


@pytest.mark.parametrize(
    'change, match',
    [
        ('one_model', r'potentials.*at least 2'),
        ('mixed_type_maps', r'type_map'),
        ('foreign_element', r'structures\.sodium.*Na'),
        ('no_structure', r'structures'),
        ('bad_condition', r'conditions.*temperature'),
        ('eps_order', r'eps_lo'),
        ('selection', r'selection'),
        ('max_candidates', r'max_candidates'),
    ],
)
def test_explore_rejects_bad_inputs(explore_inputs, ensemble, change, match):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory
    from ase import Atoms

    inputs = explore_inputs
    if change == 'one_model':
        inputs['potentials'] = {'m0': ensemble['seed_1']}
    elif change == 'mixed_type_maps':
        inputs['potentials'] = {'m0': ensemble['seed_1'], 'm1': ensemble['other_map']}
    elif change == 'foreign_element':
        atoms = Atoms('NaO', positions=[[0, 0, 0], [2, 2, 2]], cell=[5, 5, 5], pbc=True)
        inputs['structures'] = {**inputs['structures'], 'sodium': orm.StructureData(ase=atoms)}
    elif change == 'no_structure':
        inputs['structures'] = {}
    elif change == 'bad_condition':
        inputs['conditions'] = orm.List([GOOD_CONDITIONS[0], {**GOOD_CONDITIONS[1], 'temperature': -10.0}])
    elif change == 'eps_order':
        inputs['eps_lo'], inputs['eps_hi'] = orm.Float(0.3), orm.Float(0.15)
    elif change == 'selection':
        inputs['selection'] = orm.Str('best')
    elif change == 'max_candidates':
        inputs['max_candidates'] = orm.Int(-1)
    before = _count_calcjobs()
    with pytest.raises(ValueError, match=match):
        run_get_node(WorkflowFactory('liqcryst.explore_md'), **inputs)
    assert _count_calcjobs() == before


def test_calculation_rejects_bad_inputs(ensemble, melt_structure, codes):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    calculation = CalculationFactory('liqcryst.explore_md')
    good = {
        'code': codes['lmp'],
        'structure': melt_structure,
        'potentials': {'m0': ensemble['seed_1'], 'm1': ensemble['seed_2']},
        'parameters': orm.Dict(GOOD_CONDITIONS[0]),
    }
    bad = [
        ({'potentials': {'m0': ensemble['seed_1']}}, r'potentials.*at least 2'),
        ({'potentials': {'m0': ensemble['seed_1'], 'm1': ensemble['other_map']}}, 'type_map'),
        ({'parameters': orm.Dict({**GOOD_CONDITIONS[0], 'ensemble': 'nve'})}, r'parameters.*ensemble'),
        ({'parameters': orm.Dict({**GOOD_CONDITIONS[0], 'timestep': -0.001})}, r'parameters.*timestep'),
        ({'script': orm.SinglefileData.from_string('run 0\n', 'in.lammps')}, r'`script`: ExploreMD writes its own'),
    ]
    before = _count_calcjobs()
    for change, match in bad:
        with pytest.raises(ValueError, match=match):
            run_get_node(calculation, **{**good, **change})
    assert _count_calcjobs() == before


def test_the_calculation_is_aiida_lammps_raw_with_its_habits(ensemble, melt_structure, codes, tmp_path):
    """ExploreMD extends aiida-lammps' ``lammps.raw``: a code registered for it runs the exploration, ``files`` land
    beside the script and ``settings.additional_retrieve_list`` retrieves more; the models are not copied into the
    repository (local copy from the potentials' own)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    calculation = CalculationFactory('liqcryst.explore_md')
    assert issubclass(calculation, CalculationFactory('lammps.raw'))
    lmp = codes['lmp']
    try:
        raw = orm.load_code(f'lmp-raw@{lmp.computer.label}')
    except NotExistent:  # the same executable and environment, registered as a user of aiida-lammps would
        raw = orm.InstalledCode(computer=lmp.computer, filepath_executable=str(lmp.filepath_executable),
                                label='lmp-raw', default_calc_job_plugin='lammps.raw',
                                prepend_text=lmp.prepend_text).store()
    results, node = run_get_node(
        calculation, code=raw, structure=melt_structure,
        potentials={'m0': ensemble['seed_1'], 'm1': ensemble['seed_2']},
        parameters=orm.Dict({**GOOD_CONDITIONS[0], 'steps': 20, 'dump_every': 10, 'thermo_every': 10}),
        files={'note': orm.SinglefileData.from_string('kept beside the script\n', 'note.txt')},
        settings=orm.Dict({'additional_retrieve_list': ['note.txt', 'structure.data']}),
    )
    assert node.is_finished_ok, node.exit_message
    assert results['model_deviation'].get_array('max_devi_f').shape == (3,)
    retrieved = node.outputs.retrieved.base.repository.list_object_names()
    assert 'note.txt' in retrieved and 'structure.data' in retrieved
    assert node.outputs.retrieved.get_object_content('note.txt') == 'kept beside the script\n'
    stored = node.base.repository.list_object_names()
    assert 'note.txt' not in stored  # provenance_exclude_list, as aiida-lammps does
    assert not any(name.startswith('model_') for name in stored)  # models: local copies at submission
