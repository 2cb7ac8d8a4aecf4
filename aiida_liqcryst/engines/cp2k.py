"""CP2K as a reference engine: input parameters for aiida-cp2k's ``cp2k`` CalcJob and label parsing.

PBE with GTH pseudopotentials and MOLOPT basis sets (Gaussian and plane waves), Gamma point only, one
ENERGY_FORCE single point per structure. Forces and the analytical stress tensor are printed into the main
output file (``aiida.out``), which aiida-cp2k retrieves anyway, so no extra files are needed.

Sign convention: CP2K prints a pressure-like stress (positive = compressed), so the deepmd virial is
W = +sigma_cp2k * V (checked in the tests by finite differences of the energy under strain).
"""

from __future__ import annotations

import functools
import pathlib
import re

import numpy as np
from ase.units import GPa, Bohr, Hartree

DATA_DIR = pathlib.Path('/usr/share/cp2k')
BASIS_FILE = 'BASIS_MOLOPT'
POTENTIAL_FILE = 'GTH_POTENTIALS'
BASIS_SET = 'DZVP-MOLOPT-SR-GTH'

#: aiida-cp2k's main output file (retrieved by default): energy, forces and stress are printed there
OUTPUT_FILE = 'aiida.out'
SCF_NOT_CONVERGED = 'SCF run NOT converged'  # printed by every CP2K version, whether it then aborts or not


@functools.lru_cache(maxsize=None)
def basis_valence(element: str, basis_set: str = BASIS_SET, data_dir: str = str(DATA_DIR)) -> int:
    """Valence charge q of ``basis_set`` for ``element`` as listed in CP2K's BASIS_MOLOPT (``<name>-q<q>``).

    The GTH pseudopotential must carry the same charge: ``GTH-PBE-q<q>``.

    :raises ValueError: if the element has no such basis set in the data file.
    """
    path = pathlib.Path(data_dir) / BASIS_FILE
    pattern = re.compile(rf'^\s*{re.escape(element)}\s+{re.escape(basis_set)}\s+\S*-q(\d+)\b', re.MULTILINE)
    match = pattern.search(path.read_text())
    if match is None:
        raise ValueError(f'no {basis_set} basis set for element {element!r} in {path}')
    return int(match.group(1))


def kind_sections(elements, basis_set: str = BASIS_SET) -> list[dict]:
    """One ``&KIND`` section per element: MOLOPT basis and the GTH-PBE pseudopotential of the same valence."""
    return [
        {'_': el, 'BASIS_SET': basis_set, 'POTENTIAL': f'GTH-PBE-q{basis_valence(el, basis_set)}'}
        for el in sorted(set(elements))
    ]


def cp2k_parameters(
    structure,
    cutoff: float = 400.0,
    rel_cutoff: float = 50.0,
    eps_scf: float = 1.0e-6,
    max_scf: int = 50,
    outer_max_scf: int = 10,
    basis_set: str = BASIS_SET,
    data_dir: str | pathlib.Path = DATA_DIR,
) -> dict:
    """Input sections (aiida-cp2k nested dict) of a PBE ENERGY_FORCE single point at Gamma.

    The cell and coordinates are added by aiida-cp2k from the ``structure`` input.

    :param structure: ``StructureData`` or ``ase.Atoms``: only its elements are used (the KIND sections).
    :param cutoff: finest plane-wave grid cutoff in Ry; ``rel_cutoff`` in Ry.
    :param eps_scf: SCF convergence on the energy gradient; OT with an outer loop of ``outer_max_scf``.
    """
    if hasattr(structure, 'get_symbols_set'):  # StructureData: elements, not (possibly tagged) kind names
        symbols = structure.get_symbols_set()
    else:
        symbols = structure.get_chemical_symbols()
    data_dir = pathlib.Path(data_dir)
    return {
        'GLOBAL': {'RUN_TYPE': 'ENERGY_FORCE', 'PRINT_LEVEL': 'MEDIUM'},
        'FORCE_EVAL': {
            'METHOD': 'Quickstep',
            'STRESS_TENSOR': 'ANALYTICAL',
            'DFT': {
                'BASIS_SET_FILE_NAME': str(data_dir / BASIS_FILE),
                'POTENTIAL_FILE_NAME': str(data_dir / POTENTIAL_FILE),
                'MGRID': {'CUTOFF': float(cutoff), 'REL_CUTOFF': float(rel_cutoff), 'NGRIDS': 4},
                'QS': {'EPS_DEFAULT': 1.0e-12, 'EXTRAPOLATION': 'ASPC'},
                'SCF': {
                    'SCF_GUESS': 'ATOMIC',
                    'EPS_SCF': float(eps_scf),
                    'MAX_SCF': int(max_scf),
                    'OT': {'MINIMIZER': 'DIIS', 'PRECONDITIONER': 'FULL_SINGLE_INVERSE'},
                    'OUTER_SCF': {'EPS_SCF': float(eps_scf), 'MAX_SCF': int(outer_max_scf)},
                },
                'XC': {'XC_FUNCTIONAL': {'_': 'PBE'}},
            },
            'SUBSYS': {'KIND': kind_sections(symbols, basis_set)},
            'PRINT': {'FORCES': {'_': 'ON'}, 'STRESS_TENSOR': {'_': 'ON'}},
        },
    }


class Cp2kOutputError(ValueError):
    """The CP2K output lacks a quantity a label needs."""


_FLOAT = r'[-+]?\d*\.\d+(?:[EeDd][-+]?\d+)?'


def parse_cp2k_labels(output) -> dict:
    """Energy (eV), forces (eV/Å), virial (eV) and timing of an ENERGY_FORCE run from CP2K's main output.

    :param output: the output text, or a ``FolderData`` (the ``retrieved`` node) holding ``aiida.out``.
    :returns: dict with ``energy`` (float), ``forces`` (N, 3), ``virial`` (3, 3), ``stress_gpa`` (3, 3) as
        printed (pressure-like), ``volume`` (Å^3), ``seconds`` (CP2K's total time, or None).
    :raises Cp2kOutputError: when energy, forces, stress tensor or cell volume are missing, or when an SCF did
        not converge (CP2K < 2023.2 prints forces and stress anyway: they are not a label).
    """
    text = output if isinstance(output, str) else output.base.repository.get_object_content(OUTPUT_FILE)
    if SCF_NOT_CONVERGED in text:
        raise Cp2kOutputError(f'the SCF did not converge ("{SCF_NOT_CONVERGED}"): not a label')

    energies = re.findall(rf'ENERGY\| Total FORCE_EVAL \( QS \) energy[^:]*:\s+({_FLOAT})', text)
    if not energies:
        raise Cp2kOutputError('no "ENERGY| Total FORCE_EVAL" line: the single point did not finish')
    energy = float(energies[-1]) * Hartree

    forces = _parse_forces(text) * Hartree / Bohr

    volumes = re.findall(rf'CELL\| Volume \[angstrom\^3\]:\s+({_FLOAT})', text)
    if not volumes:
        raise Cp2kOutputError('no "CELL| Volume" line in the output')
    volume = float(volumes[-1])

    stress = _parse_stress_gpa(text)
    seconds = re.findall(r'^\s*CP2K\s+1\s+\S+\s+\S+\s+\S+\s+\S+\s+(\S+)\s*$', text, re.MULTILINE)
    return {
        'energy': energy,
        'forces': forces,
        'virial': stress * GPa * volume,  # pressure-like stress: W = +sigma * V
        'stress_gpa': stress,
        'volume': volume,
        'seconds': float(seconds[-1]) if seconds else None,
    }


def _parse_forces(text: str) -> np.ndarray:
    """The last ``ATOMIC FORCES in [a.u.]`` block (Hartree/Bohr)."""
    blocks = text.split('ATOMIC FORCES in [a.u.]')
    if len(blocks) < 2:
        raise Cp2kOutputError('no "ATOMIC FORCES" block: set FORCE_EVAL/PRINT/FORCES ON')
    rows = []
    for line in blocks[-1].splitlines():
        parts = line.split()
        if line.strip().startswith('SUM OF ATOMIC FORCES'):
            break
        # "  <atom> <kind> <element> fx fy fz"
        if len(parts) == 6 and parts[0].isdigit() and parts[1].isdigit():
            rows.append([float(x) for x in parts[3:6]])
    if not rows:
        raise Cp2kOutputError('empty "ATOMIC FORCES" block')
    return np.array(rows)


def _parse_stress_gpa(text: str) -> np.ndarray:
    """The last printed stress tensor in GPa: the three ``STRESS| x/y/z`` rows after its header.

    (The eigenvector table that follows uses the same row labels, so only the rows right after the
    ``stress tensor [GPa]`` header are read.)
    """
    headers = list(re.finditer(r'STRESS\|\s+(?:Analytical|Numerical) stress tensor \[GPa\]', text))
    if not headers:
        raise Cp2kOutputError(
            'no stress tensor in the output: set FORCE_EVAL/STRESS_TENSOR ANALYTICAL and FORCE_EVAL/PRINT/STRESS_TENSOR'
        )
    rows = re.findall(
        rf'^\s*STRESS\|\s+([xyz])\s+({_FLOAT})\s+({_FLOAT})\s+({_FLOAT})\s*$',
        text[headers[-1].end():],
        re.MULTILINE,
    )[:3]
    if [r[0] for r in rows] != ['x', 'y', 'z']:
        raise Cp2kOutputError('incomplete stress tensor block in the output')
    return np.array([[float(v) for v in r[1:]] for r in rows])
