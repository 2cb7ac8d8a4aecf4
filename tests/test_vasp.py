"""VASP end to end: aiida-vasp's ``vasp.vasp`` work chain runs from LabelWorkChain with aiida-vasp's ``mock-vasp``.

``mock-vasp`` (aiida-vasp's test executable) hashes the INCAR, KPOINTS and POSCAR that the plugin wrote and copies the
outputs of the registry entry whose ``inp/`` files parse to the same content: a label comes back only if the engine
wrote the recorded run's inputs. The recorded run is a real VASP 6.3 single point shipped with ASE
(``vasprun_pstress.xml``: diamond C2, PSTRESS = 1 kB, Monkhorst-Pack 4x4x4). Its ``inp/`` files are written here from
the run's own record (the ``<incar>`` block, the k-point ``<generation>``, the initial structure); ``out/`` holds
the vasprun.xml, an OUTCAR excerpt (ASE ships no OUTCAR of this run; aiida-vasp's parser reads the run status and
timings from the OUTCAR: the excerpt has exactly those lines, written from the vasprun.xml) and the CONTCAR (the
input structure, as VASP writes it after a single point; aiida-vasp requires the file). The POTCAR family is a
dummy (tests/data/vasp/potpaw_dummy: header lines only, no pseudopotential data): mock-vasp does not read it.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

ASE_VASPRUN = 'vasp/vasprun_pstress.xml'
POTCARS = pathlib.Path(__file__).parent / 'data' / 'vasp' / 'potpaw_dummy'
FAMILY = 'liqcryst-test-dummy-PBE'
STRAIN = 1.02  # the second structure: the recorded cell, 2 % larger (another POSCAR, so another registry entry)
RESTART_NELM = 150  # aiida-vasp's restart of an unconverged run (ALGO normal, NELM < 100) sets NELM = 150
KBAR_TO_EV_PER_A3 = 0.1 / 160.21766208  # 1 kB = 0.1 GPa


def recorded_vasprun() -> pathlib.Path:
    import ase.test

    return pathlib.Path(ase.test.__file__).parent / 'testdata' / ASE_VASPRUN


# ---------------------------------------------------------------------------------------------------------------------
# the registry of recorded runs (mock-vasp's MOCK_VASP_REG_BASE)
# ---------------------------------------------------------------------------------------------------------------------


def recorded_inputs(scale: float = 1.0, incar_extra: dict | None = None) -> dict:
    """INCAR, KPOINTS and POSCAR of the recorded run, from its vasprun.xml (cell scaled by ``scale``)."""
    root = ElementTree.parse(recorded_vasprun()).getroot()
    incar = {item.get('name'): item.text.strip() for item in root.find('incar')}
    incar.update(incar_extra or {})
    generation = root.find('kpoints/generation')
    vectors = {item.get('name'): item.text.split() for item in generation}
    assert generation.get('param') == 'Monkhorst-Pack' and vectors['usershift'] == ['0.00000000'] * 3
    # VASP's own record of the mesh: divisions 4 4 4 and, relative to Gamma, a shift of half a spacing (Monkhorst-Pack
    # on an even mesh); aiida-vasp writes every mesh as 'Gamma' with a shift, so the recorded mesh reads so here
    kpoints = ['recorded: Monkhorst-Pack 4x4x4', '0', 'Gamma', ' '.join(vectors['divisions']),
               ' '.join(vectors['shift'])]
    structure = root.find("structure[@name='initialpos']")
    basis = [[float(x) * scale for x in v.text.split()] for v in structure.find("crystal/varray[@name='basis']")]
    positions = [v.text.split() for v in structure.find("varray[@name='positions']")]
    symbols = [rc.find('c').text.strip() for rc in root.find("atominfo/array[@name='atoms']/set")]
    assert symbols == ['C', 'C']
    poscar = ['diamond', '1.0', *(' '.join(f'{x:.8f}' for x in row) for row in basis), 'C', str(len(symbols)), 'Direct',
              *(' '.join(row) for row in positions)]
    return {
        'INCAR': ''.join(f'{key} = {value}\n' for key, value in incar.items()),
        'KPOINTS': '\n'.join(kpoints) + '\n',
        'POSCAR': '\n'.join(poscar) + '\n',
    }


def outcar_excerpt(nelm: int, scf_steps: int, elapsed: float) -> str:
    """The OUTCAR lines aiida-vasp's OUTCAR parser reads: NELM/NSW/IBRION, one header per SCF step, timings."""
    lines = [' OUTCAR excerpt written by tests/test_vasp.py from the vasprun.xml beside it (not a VASP output)',
             f'   NELM   = {nelm:6d};   NELMIN=  2; NELMDL= -5     # of ELM steps',
             '   NSW    =      0    number of steps for IOM',
             '   IBRION =     -1    ionic relax: 0-MD 1-quasi-New 2-CG']
    lines += [f'{"-" * 39} Iteration      1({step:4d})  {"-" * 39}' for step in range(1, scf_steps + 1)]
    lines += ['', ' General timing and accounting informations for this job:',
              ' ========================================================', '',
              f'                          Elapsed time (sec):        {elapsed:.3f}', '']
    return '\n'.join(lines)


def scf_steps_and_wall(text: str) -> tuple[int, float]:
    return text.count('<scstep>'), float(re.search(r'<time name="totalsc">\s*\S+\s+(\S+)</time>', text).group(1))


def unconverged(text: str, nelm: int, in_incar: bool) -> str:
    """The recorded vasprun.xml edited into a run whose electronic loop hit NELM: the last SCF step repeated up to
    ``nelm`` steps, NELM set in the parameters (and in the <incar> block when the INCAR sets it)."""
    steps, _ = scf_steps_and_wall(text)
    start = text.rindex('  <scstep>')
    end = text.index('</scstep>\n', start) + len('</scstep>\n')
    text = text[:end] + text[start:end] * (nelm - steps) + text[end:]
    text = re.sub(r'(<i type="int" name="NELM">)\s*\d+(</i>)', rf'\g<1>{nelm:6d}\g<2>', text)
    if in_incar:
        text = text.replace(' </incar>', f'  <i type="int" name="NELM">{nelm:6d}</i>\n </incar>', 1)
    assert text.count('<scstep>') == nelm
    return text


def register(root: pathlib.Path, name: str, inputs: dict, vasprun: str, nelm: int):
    (root / name / 'inp').mkdir(parents=True)
    (root / name / 'out').mkdir()
    for filename, content in inputs.items():
        (root / name / 'inp' / filename).write_text(content)
    (root / name / 'out' / 'vasprun.xml').write_text(vasprun, encoding='iso-8859-1')
    (root / name / 'out' / 'OUTCAR').write_text(outcar_excerpt(nelm, *scf_steps_and_wall(vasprun)))
    (root / name / 'out' / 'CONTCAR').write_text(inputs['POSCAR'])  # a single point: VASP writes the input structure


@pytest.fixture(scope='module')
def registry(tmp_path_factory):
    """mock-vasp's registry: the recorded run; the strained cell whose SCF hit NELM = 60 (VASP's default); its
    restart by aiida-vasp (NELM = 150 in the INCAR) hitting NELM again."""
    root = tmp_path_factory.mktemp('mock_vasp_registry')
    text = recorded_vasprun().read_text(encoding='iso-8859-1')
    shutil.copy(recorded_vasprun(), root / 'recorded.xml')
    register(root, 'diamond', recorded_inputs(), text, nelm=60)
    register(root, 'strained_nelm60', recorded_inputs(STRAIN), unconverged(text, 60, in_incar=False), nelm=60)
    register(root, 'strained_nelm150', recorded_inputs(STRAIN, {'NELM': str(RESTART_NELM)}),
             unconverged(text, RESTART_NELM, in_incar=True), nelm=RESTART_NELM)
    return root


@pytest.fixture(scope='module')
def mock_vasp(codes, registry):
    """aiida-vasp's ``mock-vasp`` as a ``vasp.vasp`` code on the test computer, replaying ``registry``."""
    from aiida import orm

    executable = pathlib.Path(sys.executable).parent / 'mock-vasp'
    assert executable.exists(), 'mock-vasp is a console script of aiida-vasp'
    return orm.InstalledCode(
        computer=codes['oracle'].computer, filepath_executable=str(executable), label=f'mock-vasp-{registry.name}',
        default_calc_job_plugin='vasp.vasp', prepend_text=f'export MOCK_VASP_REG_BASE={registry}',
    ).store()


@pytest.fixture(scope='module')
def potcar_family(aiida_profile):
    """The dummy POTCAR family (one C POTCAR without pseudopotential data), uploaded as a user uploads PBE.54."""
    from aiida_vasp.data.potcar import PotcarData

    if PotcarData.get_potcar_group(FAMILY) is None:
        PotcarData.upload_potcar_family(str(POTCARS), FAMILY, 'dummy POTCARs of tests/data/vasp (no PAW data)',
                                        stop_if_existing=False)
    return FAMILY


def vasp_parameters(family: str) -> dict:
    """``parameters.vasp`` of the recorded run: its INCAR (PSTRESS only), its Monkhorst-Pack 4x4x4 mesh."""
    return {'incar': {'pstress': 1.0}, 'potential_family': family, 'potential_mapping': {'C': 'C'},
            'kpoints_mesh': [4, 4, 4], 'kpoints_offset': [0.5, 0.5, 0.5]}


def diamond(scale: float = 1.0):
    """The recorded run's structure as ASE reads it (cell scaled by ``scale``), as a StructureData."""
    import ase.io
    from aiida import orm

    atoms = ase.io.read(recorded_vasprun(), format='vasp-xml')
    atoms.set_cell(atoms.cell * scale, scale_atoms=True)
    atoms.calc = None
    return orm.StructureData(ase=atoms)


def label_builder(code, structures: dict, family: str, max_iterations: int = 3):
    from aiida import orm

    from aiida_liqcryst.workflows.label import LabelWorkChain

    builder = LabelWorkChain.get_builder_from_protocol(code, structures, 'vasp', ['C'], options={'withmpi': False})
    builder.parameters = orm.Dict({'vasp': vasp_parameters(family)})  # the recorded INCAR, not the protocol's
    builder.max_iterations = orm.Int(max_iterations)
    return builder


def vasp_runs(node):
    """The VaspCalculations under a LabelWorkChain, oldest first."""
    from aiida import orm

    return sorted((d for d in node.called_descendants if isinstance(d, orm.CalcJobNode)), key=lambda c: c.ctime)


def kpoints_lines(text: str) -> tuple:
    """(centering, divisions, shift) of an automatic-mesh KPOINTS."""
    lines = text.splitlines()
    return lines[2].strip(), [int(n) for n in lines[3].split()], [float(x) for x in lines[4].split()]


def point_set(points) -> list:
    """Fractional k-points folded into [0, 1), sorted: two meshes with the same set are the same mesh."""
    return sorted(map(tuple, np.round(np.mod(points, 1.0), 8) % 1.0))


# ---------------------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------------------


def test_vasp_single_point_replays_the_recorded_run(mock_vasp, potcar_family, registry):
    """The label of the recorded structure equals the recorded run: energy without P*V, zero forces, virial."""
    import ase.io
    from aiida.engine import run_get_node

    results, node = run_get_node(label_builder(mock_vasp, {'diamond': diamond()}, potcar_family))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results['failed'].get_list() == []
    (calc,) = vasp_runs(node)
    # mock-vasp found the recorded entry by the hash of the INCAR, KPOINTS and POSCAR the plugin wrote
    assert f'{registry / "diamond"} based detection' in calc.outputs.retrieved.get_object_content('vasp_output')
    assert kpoints_lines(calc.base.repository.get_object_content('KPOINTS')) == ('Gamma', [4, 4, 4], [0.5, 0.5, 0.5])

    label = results['labels']['diamond']
    reference = ase.io.read(recorded_vasprun(), format='vasp-xml')
    volume = reference.get_volume()
    pv = 1.0 * KBAR_TO_EV_PER_A3 * volume  # PSTRESS = 1 kB: the recorded e_fr_energy is the enthalpy E + P*V
    energy = float(label.get_array('energy')[0])
    assert energy == pytest.approx(-20.23985977 - pv, abs=1e-6)
    assert energy == pytest.approx(reference.get_potential_energy(force_consistent=True), abs=1e-6)
    assert np.allclose(label.get_array('forces'), 0.0) and label.get_array('forces').shape == (2, 3)
    virial = label.get_array('virial')
    expected = -reference.get_stress(voigt=False) * volume  # virial = -stress x volume (ASE: stress > 0 is tension)
    assert np.allclose(virial, expected, rtol=1e-6, atol=1e-8)
    # VASP's stress -165.9956 kB (negative: the cell pulls inwards) -> virial -1.1785 eV on the diagonal
    assert np.allclose(np.diag(virial), -165.9956258 * KBAR_TO_EV_PER_A3 * volume, rtol=1e-6)
    assert np.diag(virial) == pytest.approx([-1.1785036] * 3, abs=1e-6)
    statistics = results['statistics'].get_dict()
    assert statistics['n_labeled'] == 1 and statistics['seconds'] == pytest.approx(0.12)  # OUTCAR's elapsed time
    assert 'dataset' in results


def test_unconverged_scf_is_a_failed_label_and_the_batch_goes_on(mock_vasp, potcar_family, registry):
    """The strained cell's SCF hits NELM, aiida-vasp restarts it with NELM = 150, which is hit again: that structure
    is in ``failed`` with the reason; the recorded structure is labeled; the work chain finishes ok."""
    from aiida.engine import run_get_node

    structures = {'diamond': diamond(), 'strained': diamond(STRAIN)}
    results, node = run_get_node(label_builder(mock_vasp, structures, potcar_family, max_iterations=2))
    assert node.is_finished_ok, (node.exit_status, node.exit_message)
    assert results['failed'].get_list() == ['strained']
    assert list(results['labels']) == ['diamond']
    reason = results['statistics']['failed']['strained']
    assert 'exit 401' in reason  # the VaspWorkChain: maximum number of iterations exceeded
    assert 'last of 2 VASP run(s)' in reason and 'exit 701 The electronic structure is not converged' in reason
    assert f'electronic (SCF) loop not converged: {RESTART_NELM} steps reached NELM = {RESTART_NELM}' in reason

    runs = [calc for calc in vasp_runs(node) if calc.inputs.structure.get_cell_volume() > diamond().get_cell_volume()]
    assert [calc.exit_status for calc in runs] == [701, 701]
    assert 'NELM' not in runs[0].base.repository.get_object_content('INCAR')
    assert f'NELM = {RESTART_NELM}' in runs[1].base.repository.get_object_content('INCAR')  # aiida-vasp's restart
    for calc, entry in zip(runs, ('strained_nelm60', 'strained_nelm150')):
        assert f'{registry / entry} based detection' in calc.outputs.retrieved.get_object_content('vasp_output')


def test_kpoints_offset_is_checked_and_written(codes, potcar_family, tmp_path):
    """``kpoints_offset``: refused unless three numbers in [0, 1); written as aiida-vasp's Gamma mesh + shift, which
    with 0.5 on an even mesh are the Monkhorst-Pack points."""
    from aiida import orm
    from aiida_vasp.parsers.content_parsers.kpoints import KpointsParser
    from ase.dft.kpoints import monkhorst_pack

    from aiida_liqcryst.reference.vasp import VaspEngine, vasp_inputs

    engine = VaspEngine()
    good = vasp_parameters(potcar_family)
    assert engine.check(good, {}, {}) is None
    assert engine.check({**good, 'kpoints_offset': [0, 0, 0]}, {}, {}) is None
    for offset in ([0.5, 0.5], [0.5, 0.5, 1.0], [-0.25, 0, 0], ['0.5', 0, 0], [True, 0, 0], 0.5, None):
        message = engine.check({**good, 'kpoints_offset': offset}, {}, {})
        assert message and message.startswith('`parameters.vasp.kpoints_offset`: three numbers in [0, 1)'), offset
    assert 'three positive integers' in engine.check({**good, 'kpoints_mesh': [4, 4, True]}, {}, {})

    structure = diamond()
    inputs = vasp_inputs(None, structure, potcar_family, good, kpoints_mesh=good['kpoints_mesh'],
                         kpoints_offset=good['kpoints_offset'])
    assert inputs['kpoints'].get_kpoints_mesh() == ([4, 4, 4], [0.5, 0.5, 0.5])
    KpointsParser(data=inputs['kpoints']).write(str(tmp_path / 'KPOINTS'))
    assert kpoints_lines((tmp_path / 'KPOINTS').read_text()) == ('Gamma', [4, 4, 4], [0.5, 0.5, 0.5])
    gamma_shifted = (np.indices((4, 4, 4)).reshape(3, -1).T + 0.5) / 4
    assert point_set(gamma_shifted) == point_set(monkhorst_pack((4, 4, 4)))

    # through the work chain: refused before anything runs
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.label import LabelWorkChain

    code = orm.InstalledCode(computer=codes['oracle'].computer, filepath_executable='/bin/true',
                             label='vasp-kpoints-check', default_calc_job_plugin='vasp.vasp').store()
    with pytest.raises(ValueError, match=r'kpoints_offset`: three numbers in \[0, 1\)'):
        run_get_node(LabelWorkChain, structures={'diamond': structure}, engine=orm.Str('vasp'), code=code,
                     type_map=orm.List(['C']),
                     parameters=orm.Dict({'vasp': {**good, 'kpoints_offset': [0.5, 0.5, 1.5]}}))
