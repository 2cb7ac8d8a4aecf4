"""The oracle: a fast stand-in for PBE DFT, SevenNet-0, whose pretrained weights ship in the ``sevenn`` wheel.

It is NOT DFT. SevenNet-0 was trained on PBE (Materials Project) data and returns raw PBE-scale energies
(beta-cristobalite about -7.9 eV/atom), ordering the SiO2 polymorphs as PBE does (tetrahedral phases lowest
at 0 GPa, stishovite lowest at 10 GPa), which is what the study needs from a reference for demos and tests.
"""

from __future__ import annotations

import functools

import numpy as np
from ase import Atoms

MODEL = '7net-0'


@functools.lru_cache(maxsize=1)
def get_calculator():
    """The SevenNet-0 ASE calculator on the CPU (loaded once per process)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator(MODEL, device='cpu')


def label_atoms(atoms: Atoms) -> dict:
    """Energy (eV), forces (eV/Å) and virial (eV) of one structure.

    virial = -stress * volume, with ASE's stress sign (positive in tension), the deepmd convention.
    """
    atoms = atoms.copy()
    atoms.calc = get_calculator()
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=False)
    return {
        'energy': float(energy),
        'forces': np.asarray(forces, dtype=float),
        'virial': -np.asarray(stress, dtype=float) * atoms.get_volume(),
    }


def relax(atoms: Atoms, steps: int, fmax: float = 0.05) -> Atoms:
    """Relax positions with FIRE for at most ``steps`` steps (melt packings: remove close contacts only)."""
    from ase.optimize import FIRE

    atoms = atoms.copy()
    atoms.calc = get_calculator()
    if steps > 0:
        FIRE(atoms, logfile=None).run(fmax=fmax, steps=steps)
    return atoms
