"""ReferenceMeltWorkChain: held-out frames from the oracle's own MD (real oracle jobs), and its refusals."""

import numpy as np
import pytest
from aiida import orm

from aiida_liqcryst.engines import oracle
from aiida_liqcryst.workflows.reference_melt import PREMELT_LINK, validate_inputs

from .conftest import TINY_MELT


def test_held_out_frames_come_from_the_references_own_md(holdout_set):
    assert holdout_set.is_finished_ok, holdout_set.exit_status
    dataset = holdout_set.outputs.dataset
    densities, temperatures = TINY_MELT['densities'], TINY_MELT['temperatures']
    md = TINY_MELT['settings']['oracle']['md']
    per_run = (md['steps'] - md['skip']) // md['every']
    assert per_run == 2
    assert dataset.nframes == len(densities) * len(temperatures) * per_run
    seeds = set()
    for index, temperature in enumerate(temperatures):
        label = holdout_set.base.links.get_outgoing(link_label_filter=f'md_t{index}').one().node
        assert label.is_finished_ok
        settings = label.inputs.settings.get_dict()['oracle']['md']
        assert settings['temperature'] == temperature and settings['skip'] == md['skip']
        # every oracle job ran the MD: its structures are the MD frames, not the packings
        keys = sorted(k for calc in label.called_descendants if isinstance(calc, orm.CalcJobNode) for k in calc.outputs.structures)
        assert keys == sorted(f'd{d}_f{f}' for d in range(len(densities)) for f in range(per_run))
        # the MD starts from the classical pre-melt of a new random packing
        premelt = holdout_set.base.links.get_outgoing(link_label_filter=PREMELT_LINK.format(index=index)).one().node
        assert premelt.is_finished_ok and premelt.inputs.parameters['temperature'] == temperature
        for key, melted in label.inputs.structures.items():
            assert melted.uuid == premelt.outputs.structures[key].uuid
            packing = premelt.inputs.structures[key]
            seeds.add(packing.creator.inputs.seed.value)
            atoms = melted.get_ase()
            grams_per_cm3 = atoms.get_masses().sum() * 1.66053906660 / atoms.get_volume()
            assert grams_per_cm3 == pytest.approx(densities[int(key[1:])], rel=1e-6)
    assert len(seeds) == len(densities) * len(temperatures)  # a new packing per run
    assert min(seeds) >= 100000  # away from the loops' packings (seeds 0, 1, ...)


def test_md_skips_the_equilibration_frames():
    from aiida_liqcryst.structures.random_packing import random_packing

    atoms = random_packing({'Si': 1, 'O': 2}, 4, 2.6, 1.5, seed=3)
    everything = oracle.md_frames(atoms, steps=6, temperature=3000, timestep=1.0, every=2, seed=5)
    kept = oracle.md_frames(atoms, steps=6, temperature=3000, timestep=1.0, every=2, seed=5, skip=2)
    assert len(everything) == 3 and len(kept) == 2
    # the same trajectory: the frames kept are the last two
    for (a, la), (b, lb) in zip(everything[1:], kept):
        assert np.allclose(a.positions, b.positions)
        assert la['energy'] == pytest.approx(lb['energy'])
    assert 'md.skip' in oracle.validate_settings({'md': {'steps': 6, 'temperature': 3000, 'timestep': 1, 'every': 2, 'skip': 5}})
    assert oracle.validate_settings({'md': {'steps': 6, 'temperature': 3000, 'timestep': 1, 'every': 2, 'skip': 4}}) is None


def test_refused_without_the_references_own_md(aiida_profile):
    base = {'densities': orm.List([2.3]), 'temperatures': orm.List([3000.0])}
    assert 'cannot run MD' in validate_inputs({**base, 'label': {'engine': orm.Str('cp2k')}}, None)
    error = validate_inputs({**base, 'label': {'engine': orm.Str('oracle'), 'settings': orm.Dict({'oracle': {'relax_steps': 5}})}}, None)
    assert 'oracle.md' in error
    assert 'densities' in validate_inputs({**base, 'densities': orm.List([-1.0])}, None)
    assert 'temperatures' in validate_inputs({**base, 'temperatures': orm.List([])}, None)
    assert validate_inputs({**base, 'label': {'engine': orm.Str('oracle'), 'settings': orm.Dict(TINY_MELT['settings'])}}, None) is None


def test_premelting_protocol_needs_a_lammps_code(codes):
    from aiida_liqcryst.workflows.reference_melt import ReferenceMeltWorkChain

    with pytest.raises(ValueError, match='lammps_code'):
        ReferenceMeltWorkChain.get_builder_from_protocol(codes['oracle'], {'Si': 1, 'O': 2}, protocol='study')
    builder = ReferenceMeltWorkChain.get_builder_from_protocol(codes['oracle'], {'Si': 1, 'O': 2}, protocol='study',
                                                               lammps_code=codes['lmp'])
    assert builder.premelt.potential.value == 'vashishta_sio2_1990'
    assert 'temperature' not in builder.premelt.parameters.get_dict()  # set per run from `temperatures`
