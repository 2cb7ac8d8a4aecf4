"""PremeltWorkChain: random packings melted by a classical potential in real LAMMPS (aiida-lammps' lammps.raw)."""

import numpy as np
import pytest
from aiida import orm
from ase.neighborlist import neighbor_list

from aiida_liqcryst.structures import premelt
from aiida_liqcryst.structures.random_packing import random_packing
from aiida_liqcryst.workflows.premelt import PREMELT_LINK, validate_inputs

COMPOSITION = {'Si': 1, 'O': 2}


def si_o_coordination(atoms, cutoff=2.2):
    """Mean number of O within ``cutoff`` Å of a Si."""
    i, j = neighbor_list('ij', atoms, cutoff)
    symbols = np.array(atoms.get_chemical_symbols())
    return float(np.mean([np.sum((i == k) & (symbols[j] == 'O')) for k in np.flatnonzero(symbols == 'Si')]))


def test_packings_melt_into_tetrahedral_network(codes):
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.premelt import PremeltWorkChain

    packings = {f'p{seed}': random_packing(COMPOSITION, 8, 2.3, 1.5, seed) for seed in (1, 2)}
    _, node = run_get_node(
        PremeltWorkChain, code=codes['lmp'], structures={k: orm.StructureData(ase=a) for k, a in packings.items()},
        parameters=orm.Dict({'temperature': 3000, 'hot_steps': 1000, 'steps': 1000, 'seed': 7}),
    )
    assert node.is_finished_ok, node.exit_status
    assert sorted(node.outputs.structures) == sorted(packings)
    for key, packing in packings.items():
        melted = node.outputs.structures[key].get_ase()
        assert melted.get_chemical_formula() == packing.get_chemical_formula()
        assert np.allclose(melted.cell.lengths(), packing.cell.lengths())  # NVT: the packing's density
        # a random packing has under-coordinated Si; the melt at 2.3 g/cm^3 is a network of SiO4 (3.5-4.5)
        assert si_o_coordination(packing) < 3.0
        assert 3.5 <= si_o_coordination(melted) <= 4.5
        job = node.base.links.get_outgoing(link_label_filter=PREMELT_LINK.format(key=key)).one().node
        assert job.process_type == 'aiida.calculations:lammps.raw' and job.is_finished_ok
        # the melted structure is the job's own output file, through a calcfunction
        assert node.outputs.structures[key].creator.inputs.retrieved.uuid == job.outputs.retrieved.uuid


def test_premelt_refuses_bad_inputs(aiida_profile):
    structure = orm.StructureData(ase=random_packing(COMPOSITION, 2, 2.3, 1.5, 1))
    base = {'potential': orm.Str('vashishta_sio2_1990'), 'structures': {'a': structure}}
    assert validate_inputs({**base, 'parameters': orm.Dict({'temperature': 3000})}, None) is None
    assert 'unknown classical potential' in validate_inputs({**base, 'potential': orm.Str('bks')}, None)
    assert "need ['temperature']" in validate_inputs({**base, 'parameters': orm.Dict({'steps': 10})}, None)
    # exposed in a parent, which sets the temperature of each pre-melt itself
    assert validate_inputs({'potential': base['potential'], 'parameters': orm.Dict({'steps': 10})}, None) is None
    assert 'unknown premelt parameters' in validate_inputs({**base, 'parameters': orm.Dict({'temperature': 1, 'nsteps': 1})}, None)
    assert '`hot_steps`' in validate_inputs({**base, 'parameters': orm.Dict({'temperature': 1, 'hot_steps': -1})}, None)
    germanium = orm.StructureData(ase=random_packing({'Ge': 1, 'O': 2}, 2, 4.0, 1.5, 1))
    assert "not ['Ge']" in validate_inputs({**base, 'structures': {'g': germanium}}, None)


def test_script_and_data_round_trip():
    atoms = random_packing(COMPOSITION, 4, 2.6, 1.5, 3)
    species = premelt.species_order('vashishta_sio2_1990', set(atoms.get_chemical_symbols()))
    assert species == ['O', 'Si']  # the order pair_coeff maps types to elements
    back = premelt.read_data(premelt.write_data(atoms, species), species)
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    assert np.allclose(back.positions, atoms.positions, atol=1e-6)
    script = premelt.premelt_script('vashishta_sio2_1990', 'pot', species, {'temperature': 3500, 'steps': 0})
    assert 'pair_coeff * * pot O Si' in script and 'fix nvt all nvt temp 6000 6000' in script
    assert 'temp 3500' not in script  # steps 0: no hold stage
    assert premelt.potential_path('vashishta_sio2_1990').name == 'SiO.1990.vashishta'
    with pytest.raises(ValueError, match='unknown classical potential'):
        premelt.potential_path('nope')
