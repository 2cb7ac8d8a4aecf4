"""EOSScanWorkChain (Fig. 2) and VDOSWorkChain with a real tiny DeePMD potential and the oracle as reference."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from aiida_liqcryst.analysis.eos import TABLE_COLUMNS, eos_comparison_table
from aiida_liqcryst.structures import polymorphs

from .conftest import TINY_PARAMETERS
from .test_engines import copy_engine  # noqa: F401  (a fixture: the oracle registered under another name)

PHASES = ['stishovite', 'alpha_quartz']
POINTS = 5
VOLUME_RANGE = [0.9, 1.1]
VDOS_PARAMETERS = {
    'temperature': 300.0, 'steps': 60, 'timestep': 1.0, 'every': 1, 'ensemble': 'nve', 'equilibration_steps': 20,
    'supercell': [1, 1, 1], 'seed': 3,
}


@pytest.fixture(scope='module')
def tiny_potential(aiida_profile, codes, sio2_dataset):
    """A tiny DeePMD model trained for 100 steps on the six melt frames by DeepmdTrainCalculation (real dp)."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import CalculationFactory

    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters['model']['descriptor']['sel'] = [48, 24]  # dense crystals: stishovite at 0.9 V0 has ~40 neighbours in 4 Å
    results, node = run_get_node(
        CalculationFactory('liqcryst.deepmd.train'), code=codes['dp'], datasets={'data': sio2_dataset},
        parameters=orm.Dict(parameters), seed=orm.Int(11),
    )
    assert node.is_finished_ok, node.exit_message
    return results['potential']


def _curves(v0=10.0, b0=1.0, shift=0.0, n=7):
    """A synthetic BM curve (volumes per atom, eV/atom)."""
    from aiida_liqcryst.analysis.eos import birch_murnaghan_energy

    v = np.linspace(0.9 * v0, 1.1 * v0, n)
    return v, birch_murnaghan_energy(v, -5.0 + shift, v0, b0 * 100, 4.0)


def test_eos_comparison_table_by_construction():
    """Known differences come out of the table: volume, bulk modulus and relative energy errors."""
    curves = {
        'alpha_quartz': {'potential': _curves(), 'reference': _curves()},
        # the potential puts this phase 2 % larger, 10 % stiffer and 30 meV/atom too high
        'stishovite': {'potential': _curves(v0=7.14, b0=2.2, shift=0.13), 'reference': _curves(v0=7.0, b0=2.0, shift=0.1)},
        'broken': {'potential': (np.linspace(9, 11, 7), np.linspace(0, -1, 7)), 'reference': _curves()},
    }
    curves['stishovite']['same_geometry'] = (curves['stishovite']['potential'][0], curves['stishovite']['potential'][1] - 0.01)
    table = eos_comparison_table(curves)
    rows = table['rows']
    assert table['energy_zero'] == 'alpha_quartz'
    assert all(set(row) == set(TABLE_COLUMNS) for row in rows.values())
    assert rows['stishovite']['delta_v0_percent'] == pytest.approx(2.0, abs=0.05)
    assert rows['stishovite']['delta_b0_percent'] == pytest.approx(10.0, abs=0.5)
    assert rows['stishovite']['relative_energy_reference'] == pytest.approx(100.0, abs=0.5)
    assert rows['stishovite']['relative_energy_error'] == pytest.approx(30.0, abs=0.5)
    assert rows['stishovite']['same_geometry_rmse'] == pytest.approx(10.0)
    assert rows['alpha_quartz']['relative_energy_potential'] == 0.0 and rows['alpha_quartz']['curve_rmse'] < 1e-6
    # a monotonic curve has no minimum: no fit, a note, and the other columns still filled
    assert rows['broken']['v0_potential'] is None and rows['broken']['errors']
    assert rows['broken']['v0_reference'] == pytest.approx(10.0, rel=1e-4)
    # without the energy-zero phase, the phase of lowest reference E0 is the zero
    assert eos_comparison_table(curves, energy_zero='coesite')['energy_zero'] == 'alpha_quartz'
    # a potential without a minimum for the zero phase leaves the reference's relative energies as they were
    curves['alpha_quartz']['potential'] = curves['broken']['potential']
    rows = eos_comparison_table(curves)['rows']
    assert rows['stishovite']['relative_energy_reference'] == pytest.approx(100.0, abs=0.5)
    assert rows['stishovite']['relative_energy_potential'] is None and rows['stishovite']['relative_curve_rmse'] is None
    assert rows['stishovite']['delta_v0_percent'] == pytest.approx(2.0, abs=0.05)


def test_bad_inputs_rejected_before_running(aiida_profile, codes, tiny_potential):
    from aiida import orm
    from aiida.engine import run
    from aiida.plugins import WorkflowFactory

    EOSScan = WorkflowFactory('liqcryst.eos_scan')
    VDOS = WorkflowFactory('liqcryst.vdos')

    def builder(**overrides):
        b = EOSScan.get_builder_from_protocol(codes['ase'], {'tiny': tiny_potential}, polymorphs=['stishovite'])
        for key, value in overrides.items():
            b[key] = value
        return b

    before = orm.QueryBuilder().append(orm.ProcessNode).count()
    with pytest.raises(ValueError, match='number_of_points'):
        run(builder(number_of_points=orm.Int(3)))
    with pytest.raises(ValueError, match='volume_range'):
        run(builder(volume_range=orm.List([1.1, 0.9])))
    with pytest.raises(ValueError, match='relax_settings'):
        run(builder(relax_settings=orm.Dict({'steps': -2})))
    with pytest.raises(ValueError, match='reserved'):
        run(builder(potentials={'reference': tiny_potential}))
    with pytest.raises(ValueError, match='vdos.phases'):
        b = builder()
        b.vdos.phases = orm.List(['coesite'])
        run(b)
    with pytest.raises(ValueError, match='parameters.*temperature'):
        run(VDOS, code=codes['ase'], structure=polymorphs.as_structure_data('stishovite'),
            potentials={'tiny': tiny_potential}, parameters=orm.Dict({'temperature': -10}))
    with pytest.raises(ValueError, match=r"unknown engine 'siesta'; choose one of \['cp2k', 'oracle', 'vasp'\]"):
        EOSScan.get_builder_from_protocol(codes['ase'], {'tiny': tiny_potential}, reference='siesta')
    cp2k = EOSScan.get_builder_from_protocol(codes['ase'], {'tiny': tiny_potential}, reference='cp2k',
                                             polymorphs=['stishovite'])
    assert cp2k.reference_eos.value is False  # CP2K does not relax crystals here: potential geometries only
    assert cp2k.label.code.uuid == codes['cp2k'].uuid and cp2k.label.parameters.get_dict()['cp2k']['cutoff'] == 300
    with pytest.raises(ValueError, match=r"`reference_eos`: engine 'cp2k' cannot relax crystals here"):
        cp2k.reference_eos = orm.Bool(True)
        run(cp2k)
    with pytest.raises(ValueError, match=r"`run_vdos`: .*engine 'cp2k' cannot run it here"):
        cp2k.reference_eos = orm.Bool(False)
        cp2k.run_vdos = orm.Bool(True)
        run(cp2k)
    with pytest.raises(ValueError, match='unknown SiO2 polymorph'):
        EOSScan.get_builder_from_protocol(codes['ase'], {'tiny': tiny_potential}, polymorphs=['quartzite'])
    assert orm.QueryBuilder().append(orm.ProcessNode).count() == before


def test_protocols_cover_the_eleven_polymorphs(aiida_profile, codes, tiny_potential):
    from aiida.plugins import WorkflowFactory

    EOSScan = WorkflowFactory('liqcryst.eos_scan')
    assert set(EOSScan.get_available_protocols()) == {'demo', 'paper'}
    builder = EOSScan.get_builder_from_protocol(codes['ase'], {'LP': tiny_potential, 'HP': tiny_potential})
    assert set(builder.structures) == set(polymorphs.POLYMORPHS)
    assert set(builder.potentials) == {'LP', 'HP'}
    assert builder.volume_range.get_list() == [0.88, 1.12] and builder.number_of_points.value == 9
    paper = EOSScan.get_builder_from_protocol(codes['ase'], {'HP': tiny_potential}, protocol='paper', polymorphs=['coesite'])
    assert paper.run_vdos.value and len(paper.structures['coesite'].sites) == 48  # the shipped cell


def test_eos_scan_with_vdos(aiida_profile, codes, tiny_potential):
    """A real scan of stishovite and alpha-quartz with the tiny potential and the oracle, with a VDOS of stishovite."""
    from aiida import orm
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    EOSScan = WorkflowFactory('liqcryst.eos_scan')
    builder = EOSScan.get_builder_from_protocol(
        codes['ase'], {'tiny': tiny_potential}, polymorphs=PHASES,
        overrides={
            'number_of_points': POINTS, 'volume_range': VOLUME_RANGE,
            'relax_settings': {'steps': 8, 'scan_steps': 2, 'fmax': 0.05},
            'run_vdos': True, 'vdos': {'phases': ['stishovite'], 'parameters': VDOS_PARAMETERS},
        },
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message

    table = results['tables']['tiny'].get_dict()
    assert set(table['phases']) == set(PHASES)
    assert table['energy_zero'] == 'alpha_quartz'
    for phase, row in table['phases'].items():
        assert set(TABLE_COLUMNS) | {'natoms'} <= set(row), phase
        assert row['natoms'] == len(polymorphs.get_polymorph(phase))
        assert table['reference_curve'][phase] == 'own scan'
        assert row['same_geometry_rmse'] is not None and row['same_geometry_rmse'] >= 0
    stishovite = table['phases']['stishovite']
    cif_volume = polymorphs.get_polymorph('stishovite').volume / 6
    assert stishovite['v0_reference'] == pytest.approx(cif_volume, rel=0.06)
    assert 150 < stishovite['b0_reference'] < 500  # GPa: stishovite is very stiff (PBE ~ 250-300 GPa)
    # the oracle orders the phases as PBE: stishovite above alpha-quartz at 0 GPa
    assert table['phases']['alpha_quartz']['relative_energy_reference'] == pytest.approx(0.0, abs=1e-9)
    assert stishovite['relative_energy_reference'] > 10
    assert 0 <= stishovite['vdos_overlap'] <= 1

    curves = results['curves']['tiny']
    for phase in PHASES:
        volumes = curves.get_array(f'{phase}_volumes_potential')
        assert volumes.shape == (POINTS,)
        # the scan is at fixed fractions of the relaxed volume: the end points are 1.1 / 0.9 apart
        assert volumes[-1] / volumes[0] == pytest.approx(VOLUME_RANGE[1] / VOLUME_RANGE[0], rel=1e-6)
        assert curves.get_array(f'{phase}_energies_reference_same_geometry').shape == (POINTS,)
        assert curves.get_array(f'{phase}_energies_reference').shape == (POINTS,)

    figure = results['figures']['tiny']
    content = figure.get_content(mode='rb')
    assert content[:8] == b'\x89PNG\r\n\x1a\n' and len(content) > 10_000

    # provenance: the reference labels are of exactly the potential's geometries, made by the label work chain
    calcs = {c.inputs.settings['task'] + ('_potential' if 'potential' in c.inputs else ''): c
             for c in node.called if c.process_label == 'AseCalculation'}
    assert set(calcs) == {'eos_potential', 'eos'}
    [labeling] = [c for c in node.called if c.process_label == 'LabelWorkChain']
    assert labeling.inputs.engine.value == 'oracle' and labeling.is_finished_ok
    assert len(labeling.inputs.structures) == POINTS * len(PHASES)
    same = curves.get_array('stishovite_energies_reference_same_geometry')
    assert same[0] * 6 == pytest.approx(labeling.outputs.labels['stishovite_p00'].get_array('energy')[0], abs=1e-9)
    geometry = labeling.inputs.structures['stishovite_p00']
    assert geometry.creator.process_label == 'eos_geometries'
    assert calcs['eos_potential'].outputs.results['stishovite'] in geometry.creator.base.links.get_incoming().all_nodes()
    np.testing.assert_allclose(
        geometry.get_cell_volume() / 6, curves.get_array('stishovite_volumes_potential')[0], rtol=1e-8
    )

    vdos = next(c for c in node.called if c.process_label == 'VDOSWorkChain')
    assert vdos.is_finished_ok
    spectra = vdos.outputs.spectra
    from aiida_liqcryst.analysis.vdos import _trapezoid

    for method in ('tiny', 'reference'):
        freqs, dos = spectra.get_array(f'frequencies_{method}'), spectra.get_array(f'vdos_{method}')
        assert _trapezoid(dos, freqs) == pytest.approx(1.0, rel=1e-6)
    summary = vdos.outputs.results.get_dict()
    assert 3 < summary['reference']['mean_frequency'] < 40  # THz: SiO2 phonons lie below ~40 THz
    assert summary['tiny']['overlap'] == pytest.approx(stishovite['vdos_overlap'])
    assert isinstance(vdos.outputs.figure, orm.SinglefileData)


def test_cp2k_is_the_crystal_reference_at_the_potentials_geometries(aiida_profile, codes, tiny_potential):
    """EOSScan of stishovite (6 atoms) with CP2K energies (real PBE single points) at the potential's geometries."""
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    from aiida_liqcryst.engines.cp2k import parse_cp2k_labels

    EOSScan = WorkflowFactory('liqcryst.eos_scan')
    builder = EOSScan.get_builder_from_protocol(
        codes['ase'], {'tiny': tiny_potential}, reference='cp2k', polymorphs=['stishovite'],
        overrides={'number_of_points': POINTS, 'volume_range': VOLUME_RANGE,
                   'relax_settings': {'steps': 8, 'scan_steps': 2, 'fmax': 0.05}},
    )
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    table = results['tables']['tiny'].get_dict()
    assert table['reference'] == 'cp2k'
    assert table['reference_curve'] == {'stishovite': 'labels of the potential geometries'}
    row = table['phases']['stishovite']
    assert row['natoms'] == 6
    curves = results['curves']['tiny']
    volumes = curves.get_array('stishovite_volumes_potential')
    energies = curves.get_array('stishovite_energies_reference')
    assert energies.shape == (POINTS,)
    # every point of the reference curve is the energy CP2K printed for exactly that geometry
    [labeling] = [c for c in node.called if c.process_label == 'LabelWorkChain']
    assert labeling.inputs.engine.value == 'cp2k'
    for k in range(POINTS):
        key = f'stishovite_p{k:02d}'
        geometry = labeling.inputs.structures[key]
        assert geometry.get_cell_volume() / 6 == pytest.approx(volumes[k], rel=1e-8)
        cp2k = labeling.outputs.labels[key].creator  # the cp2k_labels calcfunction
        assert cp2k.process_label == 'cp2k_labels'
        printed = parse_cp2k_labels(cp2k.inputs.retrieved)['energy']
        assert energies[k] * 6 == pytest.approx(printed, abs=1e-8)
    # PBE with GTH pseudopotentials, valence electrons only: about -325 eV/atom for SiO2
    assert -340 < energies.mean() < -310


def test_a_registered_engine_serves_the_eos_scan(aiida_profile, codes, tiny_potential, copy_engine):
    """The test module's copy of the oracle is the reference of an E(V) scan: its labels, its own relaxations."""
    from aiida.engine import run_get_node
    from aiida.plugins import WorkflowFactory

    EOSScan = WorkflowFactory('liqcryst.eos_scan')
    builder = EOSScan.get_builder_from_protocol(
        codes['ase'], {'tiny': tiny_potential}, reference=copy_engine, reference_code=codes['oracle'],
        polymorphs=['stishovite'], overrides={'number_of_points': POINTS, 'volume_range': VOLUME_RANGE,
                                              'relax_settings': {'steps': 8, 'scan_steps': 2, 'fmax': 0.05}},
    )
    assert builder.reference_eos.value is True  # it inherits the oracle's ASE calculator
    results, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_message
    table = results['tables']['tiny'].get_dict()
    assert table['reference'] == copy_engine
    [labeling] = [c for c in node.called if c.process_label == 'LabelWorkChain']
    assert labeling.inputs.engine.value == copy_engine
    same = results['curves']['tiny'].get_array('stishovite_energies_reference_same_geometry')
    labels = labeling.outputs.labels
    assert np.allclose(same * 6, [labels[f'stishovite_p{k:02d}'].get_array('energy')[0] for k in range(POINTS)])
