"""The eleven SiO2 polymorphs of the paper (Fig. 2) as crystal structures.

The CIF files live in ``aiida_liqcryst/data/polymorphs``; each starts with a comment naming its source
(AMCSD entries copied verbatim where available; a few are derived or computed structures, see the headers).
They are starting geometries: an energy–volume scan relaxes them with the method under test first.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Polymorph:
    """What the library knows about one polymorph besides its structure."""

    label: str  # for plots
    space_group: int  # international number of the shipped cell (spglib, symprec 0.01)
    si_coordination: int  # O neighbours of every Si


POLYMORPHS: dict[str, Polymorph] = {
    'alpha_quartz': Polymorph('α-quartz', 154, 4),
    'beta_quartz': Polymorph('β-quartz', 180, 4),
    'alpha_cristobalite': Polymorph('α-cristobalite', 92, 4),
    'beta_cristobalite': Polymorph('β-cristobalite', 227, 4),
    'alpha_tridymite': Polymorph('α-tridymite', 20, 4),
    'beta_tridymite': Polymorph('β-tridymite', 194, 4),
    'keatite': Polymorph('keatite', 96, 4),
    'moganite': Polymorph('moganite', 15, 4),
    'coesite': Polymorph('coesite', 15, 4),
    'seifertite': Polymorph('seifertite', 60, 6),
    'stishovite': Polymorph('stishovite', 136, 6),
}


def normalize_name(name: str) -> str:
    """The library key of ``name``: case, '-', ' ' and Greek letters are forgiven ('alpha-quartz', 'α quartz').

    :raises ValueError: for an unknown polymorph, listing the known names.
    """
    key = str(name).strip().lower().replace('α', 'alpha_').replace('β', 'beta_')
    key = '_'.join(key.replace('-', ' ').replace('_', ' ').split())
    if key not in POLYMORPHS:
        raise ValueError(f'unknown SiO2 polymorph {name!r}; known: {", ".join(POLYMORPHS)}')
    return key


def cif_path(name: str):
    """Path (a ``pathlib.Path``-like resource) of the CIF file of polymorph ``name``."""
    return resources.files('aiida_liqcryst') / 'data' / 'polymorphs' / f'{normalize_name(name)}.cif'


def get_polymorph(name: str, primitive: bool = False):
    """The crystal structure of polymorph ``name`` as a pymatgen ``Structure`` (the cell of the CIF file).

    :param primitive: return the primitive cell instead (fewer atoms for DFT).
    """
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        # Benign: pymatgen snaps coordinates like 0.3333 to 1/3 in the verbatim AMCSD files.
        warnings.filterwarnings('ignore', message='.*fractional coordinates rounded.*')
        structure = Structure.from_file(str(cif_path(name)))
    return structure.get_primitive_structure() if primitive else structure


CIF_CONTENT = (
    'a crystal CIF gives the cell (_cell_length_a/b/c, _cell_angle_alpha/beta/gamma) and a loop of atom sites '
    '(_atom_site_type_symbol or _atom_site_label with _atom_site_fract_x/y/z)'
)


def load_cif(path, primitive: bool = False):
    """A crystal structure from a user's CIF file ``path`` as a pymatgen ``Structure`` (first data block).

    :param primitive: return the primitive cell instead.
    :raises ValueError: naming the file and what a crystal CIF must contain, when the file is missing or holds
        no crystal (no cell, no atom sites, text that is not CIF).
    """
    import pathlib

    from pymatgen.core import Structure

    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f'CIF file `{path}`: no such file')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # pymatgen's parse warnings: a failure is reported below
            structure = Structure.from_str(path.read_text(encoding='utf-8', errors='replace'), fmt='cif')
    except Exception as exc:  # pymatgen's parse errors: ValueError, KeyError, ... depending on what is missing
        raise ValueError(f'CIF file `{path}` holds no crystal structure ({exc}): {CIF_CONTENT}') from exc
    if len(structure) == 0 or not structure.volume > 0:
        raise ValueError(f'CIF file `{path}` holds no atoms in a 3D cell: {CIF_CONTENT}')
    return structure.get_primitive_structure() if primitive else structure


def get_atoms(name: str, primitive: bool = False):
    """The crystal structure of polymorph ``name`` as ``ase.Atoms``."""
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(get_polymorph(name, primitive=primitive))


def as_structure_data(name: str, primitive: bool = False):
    """The crystal structure of polymorph ``name`` as an (unstored) ``orm.StructureData``."""
    from aiida import orm

    return orm.StructureData(pymatgen=get_polymorph(name, primitive=primitive))
