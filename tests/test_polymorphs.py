"""The SiO2 polymorph library: every shipped crystal is the phase the paper names."""

import pytest

from aiida_liqcryst.structures import polymorphs

# From the table of the data README (shared/data/sio2/README.md): space group, atoms per cell,
# volume per SiO2 (Å^3), Si coordination.
EXPECTED = {
    'alpha_quartz': (154, 9, 37.71, 4),
    'beta_quartz': (180, 9, 39.33, 4),
    'alpha_cristobalite': (92, 12, 42.78, 4),
    'beta_cristobalite': (227, 24, 45.12, 4),
    'alpha_tridymite': (20, 24, 45.23, 4),
    'beta_tridymite': (194, 12, 51.38, 4),
    'keatite': (96, 36, 41.29, 4),
    'moganite': (15, 36, 38.01, 4),
    'coesite': (15, 48, 34.15, 4),
    'seifertite': (60, 12, 23.23, 6),
    'stishovite': (136, 6, 23.31, 6),
}


def test_library_names_the_eleven_phases():
    assert set(polymorphs.POLYMORPHS) == set(EXPECTED)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_polymorph_structure(name):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    space_group, natoms, volume_per_sio2, coordination = EXPECTED[name]
    structure = polymorphs.get_polymorph(name)
    assert structure.composition.reduced_formula == 'SiO2'
    assert len(structure) == natoms
    assert SpacegroupAnalyzer(structure, symprec=0.01).get_space_group_number() == space_group
    assert structure.volume / (natoms / 3) == pytest.approx(volume_per_sio2, abs=0.01)
    for site in structure:
        if site.specie.symbol == 'Si':
            oxygens = [n for n in structure.get_neighbors(site, 2.0) if n.specie.symbol == 'O']
            assert len(oxygens) == coordination, f'{name}: Si with {len(oxygens)} O within 2 Å'
    assert polymorphs.POLYMORPHS[name].space_group == space_group
    assert polymorphs.POLYMORPHS[name].si_coordination == coordination


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_cif_names_its_source(name):
    text = polymorphs.cif_path(name).read_text()
    header = [line for line in text.splitlines() if line.startswith('#')]
    assert text.startswith('#')
    assert any(word in ' '.join(header) for word in ('SOURCE', 'DERIVED', 'github.com', 'AMCSD', 'Ref'))


@pytest.mark.parametrize('alias', ['alpha-quartz', 'Alpha Quartz', 'α-quartz', ' alpha_quartz '])
def test_aliases(alias):
    assert polymorphs.normalize_name(alias) == 'alpha_quartz'
    assert polymorphs.get_polymorph(alias) == polymorphs.get_polymorph('alpha_quartz')


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match='unknown SiO2 polymorph.*stishovite'):
        polymorphs.get_polymorph('gamma-quartz')


def test_primitive_and_ase():
    primitive = polymorphs.get_polymorph('beta_cristobalite', primitive=True)
    assert len(primitive) == 6
    atoms = polymorphs.get_atoms('stishovite')
    assert atoms.get_chemical_formula() == 'O4Si2'
    assert all(atoms.pbc)


def test_as_structure_data(aiida_profile):
    structure = polymorphs.as_structure_data('alpha-quartz')
    reference = polymorphs.get_polymorph('alpha_quartz')
    assert structure.get_formula() == 'O6Si3'
    assert structure.get_cell_volume() == pytest.approx(reference.volume)
    assert structure.get_pymatgen().composition == reference.composition
