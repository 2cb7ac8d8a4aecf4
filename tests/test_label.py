"""LabelWorkChain: oracle batches, real CP2K single points (checked by finite differences), VASP inputs, validation."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from aiida_liqcryst.structures.polymorphs import cif_path  # the CIFs the package ships
from aiida_liqcryst.structures.random_packing import random_packing

TYPE_MAP = ['O', 'Si']
ASE_VASPRUN = 'vasp/vasprun_pstress.xml'  # a real VASP 6.3 output shipped with ASE's tests (PSTRESS = 1 kB)


def small_melt(seed: int) -> Atoms:
    return random_packing({'Si': 1, 'O': 2}, 4, 2.6, 1.5, seed=seed)


def structure_nodes(structures: dict) -> dict:
    from aiida import orm

    return {key: orm.StructureData(ase=atoms) for key, atoms in structures.items()}


def sorted_by_type(atoms_or_symbols, array):
    """Rows of ``array`` in the dataset's atom order (stable sort by type_map index)."""
    symbols = atoms_or_symbols.get_chemical_symbols() if hasattr(atoms_or_symbols, 'get_chemical_symbols') else atoms_or_symbols
    order = np.argsort([TYPE_MAP.index(s) for s in symbols], kind='stable')
    return np.asarray(array)[order]


def called_calcjobs(node, process_label: str):
    return [c for c in node.called_descendants if c.process_label == process_label]


# ---------------------------------------------------------------------------------------------------------------------
# oracle
# ---------------------------------------------------------------------------------------------------------------------


def test_oracle_labels_in_parallel_batches_and_reports_failures(codes):
    """Four melts and one broken structure (overlapping atoms), batch_size 3: two jobs, four frames, one failure."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.label import LabelWorkChain

    structures = {f'melt_{i}': small_melt(i) for i in range(4)}
    broken = small_melt(9)
    broken.positions[1] = broken.positions[0]
    structures['broken'] = broken

    builder = LabelWorkChain.get_builder_from_protocol(
        codes['oracle'], structure_nodes(structures), 'oracle', TYPE_MAP, overrides={'batch_size': 3},
        options={'prepend_text': 'export OMP_NUM_THREADS=1'},  # two jobs at once on two cores
    )
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    jobs = called_calcjobs(node, 'OracleCalculation')
    assert len(jobs) == 2
    assert sorted(len(job.inputs.structures) for job in jobs) == [2, 3]
    assert results['failed'].get_list() == ['broken']
    statistics = results['statistics'].get_dict()
    assert statistics['n_labeled'] == 4 and statistics['n_failed'] == 1 and statistics['n_structures'] == 5
    assert 'non-finite' in statistics['failed']['broken']
    assert statistics['seconds'] > 0 and statistics['labels_per_second'] > 0
    messages = [log.message for log in orm.Log.collection.get_logs_for(node)]
    assert any('broken' in message and 'left out' in message for message in messages)

    # the dataset holds exactly the labels the jobs returned, frame by frame
    dataset = results['dataset']
    assert dataset.nframes == 4 and dataset.type_map == TYPE_MAP
    labels = {key: (job.outputs.structures[key], job.outputs.labels[key]) for job in jobs
              for key in job.outputs.labels}
    assert sorted(labels) == [f'melt_{i}' for i in range(4)]
    frames = dataset.get_frames()
    for key, (structure, label) in labels.items():
        energy = label.get_array('energy')[0]
        matches = [f for f in frames if abs(f['energy'] - energy) < 1e-8]
        assert len(matches) == 1, key
        atoms = structure.get_ase()
        assert np.allclose(matches[0]['forces'], sorted_by_type(atoms, label.get_array('forces')))
        assert np.allclose(matches[0]['virial'], label.get_array('virial'))
        assert np.allclose(matches[0]['positions'], sorted_by_type(atoms, atoms.positions))


def test_identical_labels_are_reused_from_the_cache(codes):
    """With the caching ``aiida-liqcryst setup`` enables, labeling the same structures again runs no new job."""
    import contextlib

    from aiida.engine import run_get_node
    from aiida.manage.caching import enable_caching

    from aiida_liqcryst.cli.setup import CACHED_CALCULATIONS
    from aiida_liqcryst.workflows.label import LabelWorkChain

    structures = {f'melt_{i}': small_melt(20 + i) for i in range(2)}
    with contextlib.ExitStack() as stack:
        for identifier in CACHED_CALCULATIONS:
            stack.enter_context(enable_caching(identifier=identifier))
        runs = []
        for _ in range(2):  # new, equal StructureData nodes each time: the hash is of the content
            builder = LabelWorkChain.get_builder_from_protocol(codes['oracle'], structure_nodes(structures), 'oracle', TYPE_MAP)
            runs.append(run_get_node(builder))
    (first, first_node), (second, second_node) = runs
    assert first_node.is_finished_ok and second_node.is_finished_ok
    [original], [reused] = called_calcjobs(first_node, 'OracleCalculation'), called_calcjobs(second_node, 'OracleCalculation')
    assert original.base.caching.get_cache_source() is None
    assert reused.base.caching.get_cache_source() == original.uuid
    assert reused.pk != original.pk and reused.is_finished_ok
    energies = [sorted(frame['energy'] for frame in run['dataset'].get_frames()) for run, _ in runs]
    assert len(energies[0]) == 2 and energies[0] == energies[1]


# ---------------------------------------------------------------------------------------------------------------------
# CP2K: real single points through the work chain, the virial and forces checked by finite differences
# ---------------------------------------------------------------------------------------------------------------------

STRAIN = 4e-3  # isotropic
SHIFT = 0.01  # Å, one O atom along x


def test_cp2k_labels_match_finite_differences(codes):
    """Stishovite (6 atoms), the same strained by ε, and that with one O moved by δ: three PBE single points.

    Trapezoidal rule along each path (exact derivatives at both ends, error O(step^3)):
    E(ε) - E(0) = -ε/2 [tr W(0) + tr W(ε)/(1+ε)]  (isotropic strain dε/(1+ε) at the strained end),
    E(x+δ) - E(x) = -δ/2 [F_x(x) + F_x(x+δ)].
    """
    import ase.io
    from aiida.engine import run_get_node

    from aiida_liqcryst.engines.cp2k import parse_cp2k_labels
    from aiida_liqcryst.workflows.label import LabelWorkChain

    base = ase.io.read(cif_path('stishovite'))
    strained = base.copy()
    strained.set_cell(base.cell * (1 + STRAIN), scale_atoms=True)
    moved = strained.copy()
    oxygen = next(i for i, s in enumerate(moved.get_chemical_symbols()) if s == 'O')
    moved.positions[oxygen, 0] += SHIFT
    structures = {'base': base, 'strained': strained, 'moved': moved}

    builder = LabelWorkChain.get_builder_from_protocol(
        codes['cp2k'], structure_nodes(structures), 'cp2k', TYPE_MAP,
        # three jobs at once on two cores: one thread each instead of the code's two
        options={'prepend_text': 'export OMP_NUM_THREADS=1', 'max_wallclock_seconds': 900},
    )
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    assert results['failed'].get_list() == []
    assert results['dataset'].nframes == 3
    assert len(called_calcjobs(node, 'Cp2kCalculation')) == 3
    key_of = {structure.uuid: key for key, structure in builder.structures.items()}
    parsed = {
        key_of[child.inputs.cp2k.structure.uuid]: parse_cp2k_labels(child.outputs.retrieved)
        for child in node.called if child.process_label == 'Cp2kLabelWorkChain'
    }
    assert set(parsed) == set(structures)
    # the dataset frames are these labels
    dataset_energies = sorted(f['energy'] for f in results['dataset'].get_frames())
    assert np.allclose(dataset_energies, sorted(p['energy'] for p in parsed.values()))

    e0, e1, e2 = (parsed[key]['energy'] for key in ('base', 'strained', 'moved'))
    w0, w1 = np.trace(parsed['base']['virial']), np.trace(parsed['strained']['virial'])
    predicted = -STRAIN / 2 * (w0 + w1 / (1 + STRAIN))
    assert abs(predicted) > 0.05  # eV: large enough to see a sign or unit error
    assert e1 - e0 == pytest.approx(predicted, rel=0.03)

    f1, f2 = parsed['strained']['forces'][oxygen, 0], parsed['moved']['forces'][oxygen, 0]
    predicted = -SHIFT / 2 * (f1 + f2)
    assert abs(predicted) > 0.01
    assert e2 - e1 == pytest.approx(predicted, rel=0.03)
    assert np.allclose(parsed['base']['forces'].sum(axis=0), 0.0, atol=1e-3)  # no net force


def test_cp2k_scf_fix_escalates_then_gives_up():
    from aiida_liqcryst.engines.cp2k import cp2k_parameters
    from aiida_liqcryst.workflows.cp2k_label import WFN_RESTART, scf_fix

    parameters = cp2k_parameters(small_melt(0), max_scf=3, outer_max_scf=1)
    first, change = scf_fix(parameters, 0)
    scf = first['FORCE_EVAL']['DFT']['SCF']
    assert scf['MAX_SCF'] == 6 and scf['OUTER_SCF']['MAX_SCF'] == 2 and scf['SCF_GUESS'] == 'RESTART'
    assert scf['OT'] == {'MINIMIZER': 'DIIS', 'PRECONDITIONER': 'FULL_SINGLE_INVERSE'}
    assert first['FORCE_EVAL']['DFT']['RESTART_FILE_NAME'] == WFN_RESTART and 'MAX_SCF 6' in change
    second, change = scf_fix(first, 1)
    scf = second['FORCE_EVAL']['DFT']['SCF']
    assert scf['MAX_SCF'] == 12 and scf['OT'] == {'MINIMIZER': 'CG', 'PRECONDITIONER': 'FULL_ALL'} and 'CG' in change
    assert scf_fix(second, 2) is None
    assert parameters['FORCE_EVAL']['DFT']['SCF']['MAX_SCF'] == 3  # the input is not modified


def test_cp2k_scf_not_converged_is_retried_from_the_wavefunction(codes):
    """A real SCF failure: 3 OT steps and one outer loop cannot converge stishovite. The handler reruns from the
    last wavefunction with twice the iterations until CP2K converges; the label is kept, and it is the converged
    run's (the unconverged output is refused by parse_cp2k_labels)."""
    import ase.io
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    from aiida_liqcryst.workflows.label import LabelWorkChain

    builder = LabelWorkChain.get_builder_from_protocol(
        codes['cp2k'], structure_nodes({'base': ase.io.read(cif_path('stishovite'))}), 'cp2k', TYPE_MAP,
        overrides={'parameters': {'cp2k': {'max_scf': 3, 'outer_max_scf': 1}}}, options={'max_wallclock_seconds': 900},
    )
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    assert results['dataset'].nframes == 1 and results['failed'].get_list() == []
    [work] = [child for child in node.called if child.process_label == 'Cp2kLabelWorkChain']
    calcs = sorted(called_calcjobs(work, 'Cp2kCalculation'), key=lambda calc: calc.pk)
    from aiida_liqcryst.workflows.cp2k_label import scf_failed

    # the parser owns the exit code: CP2K >= 2023.2 aborts, 2023.1 (Debian 12) prints the warning and goes on;
    # either way the label parser (liqcryst.cp2k) gives aiida-cp2k's ERROR_SCF_NOT_CONVERGED
    not_converged = CalculationFactory('cp2k').exit_codes.ERROR_SCF_NOT_CONVERGED.status
    assert calcs[0].base.attributes.get('parser_name') == 'liqcryst.cp2k'
    assert calcs[0].exit_status == not_converged and scf_failed(calcs[0])
    assert calcs[-1].is_finished_ok and not scf_failed(calcs[-1])
    assert 2 <= len(calcs) <= 3
    retry = calcs[1].inputs.parameters.get_dict()['FORCE_EVAL']['DFT']
    assert retry['SCF']['MAX_SCF'] == 6 and retry['SCF']['SCF_GUESS'] == 'RESTART'
    assert calcs[1].inputs.parent_calc_folder.uuid == calcs[0].outputs.remote_folder.uuid
    reports = [log.message for log in orm.Log.collection.get_logs_for(work)]
    assert any('SCF not converged; retrying with MAX_SCF 6' in message for message in reports), reports
    from aiida_liqcryst.engines.cp2k import Cp2kOutputError, parse_cp2k_labels

    with pytest.raises(Cp2kOutputError, match='SCF'):
        parse_cp2k_labels(calcs[0].outputs.retrieved)
    label = parse_cp2k_labels(calcs[-1].outputs.retrieved)
    assert results['dataset'].get_frames()[0]['energy'] == pytest.approx(label['energy'])


def test_cp2k_parameters_follow_the_elements():
    """KIND sections: DZVP-MOLOPT-SR-GTH with the GTH-PBE pseudopotential of the same valence."""
    from aiida_liqcryst.engines.cp2k import cp2k_parameters

    atoms = Atoms('SiO2Na', positions=np.zeros((4, 3)), cell=[5, 5, 5], pbc=True)
    sections = cp2k_parameters(atoms, cutoff=350)
    kinds = {k['_']: k for k in sections['FORCE_EVAL']['SUBSYS']['KIND']}
    assert kinds['Si']['POTENTIAL'] == 'GTH-PBE-q4' and kinds['O']['POTENTIAL'] == 'GTH-PBE-q6'
    assert kinds['Na']['POTENTIAL'] == 'GTH-PBE-q9'  # semicore: read from BASIS_MOLOPT, not assumed
    assert all(k['BASIS_SET'] == 'DZVP-MOLOPT-SR-GTH' for k in kinds.values())
    assert sections['FORCE_EVAL']['DFT']['MGRID']['CUTOFF'] == 350.0
    assert sections['GLOBAL']['RUN_TYPE'] == 'ENERGY_FORCE'
    assert sections['FORCE_EVAL']['STRESS_TENSOR'] == 'ANALYTICAL'
    with pytest.raises(ValueError, match='Xx|Og'):
        cp2k_parameters(Atoms('Og', cell=[5, 5, 5], pbc=True))


# ---------------------------------------------------------------------------------------------------------------------
# VASP (not installed): the inputs aiida-vasp would write, and the label conversion on a real vasprun.xml
# ---------------------------------------------------------------------------------------------------------------------


def test_vasp_inputs_write_the_paper_incar_and_gamma_kpoints(aiida_profile, tmp_path):
    """INCAR and KPOINTS as aiida-vasp renders them (its parameter massager and file writers)."""
    from aiida import orm
    from aiida_vasp.assistant.parameters import ParametersMassage
    from aiida_vasp.parsers.content_parsers.incar import IncarParser
    from aiida_vasp.parsers.content_parsers.kpoints import KpointsParser

    from aiida_liqcryst.reference.vasp import vasp_inputs
    from aiida_liqcryst.workflows.label import LabelWorkChain

    parameters = LabelWorkChain.get_protocol_inputs('paper')['parameters']['vasp']
    assert parameters['potential_family'] == 'PBE.54'
    structure = orm.StructureData(ase=small_melt(0))
    inputs = vasp_inputs(None, structure, parameters['potential_family'], parameters, {'withmpi': True})
    assert inputs['potential_family'].value == 'PBE.54'
    assert inputs['potential_mapping'].get_dict() == {'O': 'O', 'Si': 'Si'}
    assert inputs['calc']['metadata']['options'] == {'withmpi': True}

    incar = ParametersMassage(inputs['parameters'].get_dict()).parameters.incar
    IncarParser(data=orm.Dict(dict(incar))).write(str(tmp_path / 'INCAR'))
    text = (tmp_path / 'INCAR').read_text().upper()
    for tag, value in (('ENCUT', '520'), ('ISMEAR', '0'), ('SIGMA', '0.05'), ('IBRION', '-1'), ('NSW', '0')):
        assert any(line.split('=')[0].strip() == tag and line.split('=')[1].split()[0] == value
                   for line in text.splitlines() if '=' in line), (tag, text)

    KpointsParser(data=inputs['kpoints']).write(str(tmp_path / 'KPOINTS'))
    lines = (tmp_path / 'KPOINTS').read_text().splitlines()
    assert lines[1].strip() == '0' and lines[2].strip() == 'Gamma'  # automatic mesh, Gamma-centred
    assert lines[3].split() == ['1', '1', '1'] and [float(x) for x in lines[4].split()] == [0.0, 0.0, 0.0]


def test_vasp_label_conversion_on_a_real_vasprun():
    """aiida-vasp's vasprun parser + vasp_label_arrays agree with ASE's reader (force-consistent energy, stress)."""
    import pathlib

    import ase.io
    import ase.test
    from aiida_vasp.parsers.content_parsers.vasprun import VasprunParser

    from aiida_liqcryst.reference.vasp import vasp_label_arrays

    path = pathlib.Path(ase.test.__file__).parent / 'testdata' / ASE_VASPRUN
    with open(path, 'rb') as handle:
        quantities, _ = VasprunParser(
            handler=handle, settings={'energy_type': ['energy_free', 'energy_extrapolated']}
        ).get_all_quantities()
    misc = {key: quantities[key] for key in ('total_energies', 'forces', 'stress')}
    reference = ase.io.read(path, format='vasp-xml')
    volume = reference.get_volume()
    label = vasp_label_arrays(misc, volume, pstress=1.0)

    assert label['energy'] == pytest.approx(reference.get_potential_energy(force_consistent=True), abs=1e-6)
    assert np.allclose(label['forces'], reference.get_forces())
    expected_virial = -reference.get_stress(voigt=False) * volume
    assert np.abs(expected_virial).max() > 0.1
    assert np.allclose(label['virial'], expected_virial, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------------------
# validation and protocol
# ---------------------------------------------------------------------------------------------------------------------


def test_builder_from_protocol(codes):
    from aiida_liqcryst.workflows.label import LabelWorkChain

    structures = structure_nodes({'a': small_melt(0)})
    builder = LabelWorkChain.get_builder_from_protocol(codes['cp2k'], structures, 'cp2k', TYPE_MAP, protocol='paper')
    assert builder.batch_size.value == 32
    assert builder.parameters.get_dict()['cp2k']['cutoff'] == 600
    assert builder.options.get_dict()['resources'] == {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
    assert 'protocol' not in LabelWorkChain.spec().inputs  # the protocol is read here, once: the process gets its values as inputs
    with pytest.raises(ValueError, match='unknown protocol'):
        LabelWorkChain.get_builder_from_protocol(codes['cp2k'], structures, 'cp2k', TYPE_MAP, protocol='nope')
    with pytest.raises(ValueError, match=r"unknown override keys \['batchsize'\].*allowed are \['batch_size'"):
        LabelWorkChain.get_builder_from_protocol(codes['cp2k'], structures, 'cp2k', TYPE_MAP, overrides={'batchsize': 2})
    with pytest.raises(ValueError, match=r"unknown engine 'siesta'; choose one of \['cp2k', 'oracle', 'vasp'\]"):
        LabelWorkChain.get_builder_from_protocol(codes['cp2k'], structures, 'siesta', TYPE_MAP)
    vasp = LabelWorkChain.get_builder_from_protocol(codes['cp2k'], structures, 'vasp', TYPE_MAP, potential_family='PBE.64')
    assert vasp.parameters.get_dict()['vasp']['potential_family'] == 'PBE.64'
    assert vasp.parameters.get_dict()['vasp']['incar']['encut'] == 520


def bad_inputs(codes):
    """(description, inputs change, expected message) for the rejected-input test."""
    from aiida import orm

    na = Atoms('NaO', positions=[[0, 0, 0], [2, 0, 0]], cell=[5, 5, 5], pbc=True)
    return [
        ('unknown engine', {'engine': orm.Str('siesta')}, 'unknown engine'),
        ('code of another plugin', {'engine': orm.Str('cp2k')}, 'needs a code for `cp2k`'),
        ('no structures', {'structures': {}}, 'at least one structure'),
        ('element not in type map', {'structures': structure_nodes({'na': na})}, r"\['Na'\] are not in `type_map`"),
        ('bad oracle settings', {'settings': orm.Dict({'oracle': {'relax_steps': -1}})}, 'relax_steps'),
        ('settings not keyed by engine', {'settings': orm.Dict({'relax_steps': 5})}, 'keyed by engine'),
        ('bad type map', {'type_map': orm.List(['O', 'O'])}, 'distinct element symbols'),
        ('bad batch size', {'batch_size': orm.Int(0)}, 'batch_size'),
        ('vasp without family', {'engine': orm.Str('vasp'), 'code': codes['vasp_like']}, 'needs the name'),
        ('vasp, family not uploaded', {'engine': orm.Str('vasp'), 'code': codes['vasp_like'],
                                       'parameters': orm.Dict({'vasp': {'potential_family': 'PBE.54'}})},
         'no POTCAR family'),
        ('vasp, unknown parameter', {'engine': orm.Str('vasp'), 'code': codes['vasp_like'],
                                     'parameters': orm.Dict({'vasp': {'potcar_family': 'PBE.54'}})},
         r"`parameters.vasp`: unknown keys \['potcar_family'\]"),
        ('vasp, bad k-point mesh', {'engine': orm.Str('vasp'), 'code': codes['vasp_like'],
                                    'parameters': orm.Dict({'vasp': {'potential_family': 'PBE.54', 'kpoints_mesh': [2, 2]}})},
         'three positive integers'),
        ('cp2k, unknown parameter', {'engine': orm.Str('cp2k'), 'code': codes['cp2k'],
                                     'parameters': orm.Dict({'cp2k': {'ecut': 400}})},
         r"`parameters.cp2k`: unknown keys \['ecut'\]; allowed: \['basis_set'"),
        ('oracle with parameters', {'parameters': orm.Dict({'oracle': {'relax_steps': 2}})}, 'the oracle has no parameters'),
    ]


@pytest.fixture(scope='module')
def vasp_like_code(codes):
    """A code registered for aiida-vasp (the executable is irrelevant: nothing may run)."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    computer = codes['oracle'].computer
    try:
        return orm.load_code(f'vasp-check@{computer.label}')
    except NotExistent:
        return orm.InstalledCode(computer=computer, filepath_executable='/bin/true', label='vasp-check',
                                 default_calc_job_plugin='vasp.vasp').store()


def test_bad_inputs_are_rejected_before_running(codes, vasp_like_code):
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.orm import ProcessNode, QueryBuilder

    from aiida_liqcryst.workflows.label import LabelWorkChain

    codes = {**codes, 'vasp_like': vasp_like_code}
    base = {
        'structures': structure_nodes({'a': small_melt(0)}),
        'engine': orm.Str('oracle'),
        'code': codes['oracle'],
        'type_map': orm.List(TYPE_MAP),
    }
    before = QueryBuilder().append(ProcessNode).count()
    for description, change, message in bad_inputs(codes):
        with pytest.raises(ValueError, match=message):
            run_get_node(LabelWorkChain, **{**base, **change})
        assert QueryBuilder().append(ProcessNode).count() == before, description


def test_nothing_labeled_is_an_error(codes):
    """Every job lost (the executable wrote nothing): exit 410, each structure listed in `failed` with the reason."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.label import LabelWorkChain

    computer = codes['oracle'].computer
    try:
        silent = orm.load_code(f'oracle-silent@{computer.label}')
    except NotExistent:
        silent = orm.InstalledCode(computer=computer, filepath_executable='/bin/false', label='oracle-silent',
                                   default_calc_job_plugin='liqcryst.oracle').store()
    builder = LabelWorkChain.get_builder_from_protocol(
        silent, structure_nodes({'a': small_melt(0), 'b': small_melt(1)}), 'oracle', TYPE_MAP
    )
    results, node = run_get_node(builder)
    assert node.exit_status == LabelWorkChain.exit_codes.ERROR_NOTHING_LABELED.status
    assert 'dataset' not in results
    assert results['failed'].get_list() == ['a', 'b']
    assert all('exit 300' in reason for reason in results['statistics']['failed'].values())
