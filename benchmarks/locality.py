"""The oracle's locality floor: the force RMSE no model with cut-off rc can beat on SevenNet-0 SiO2 melt.

For each density: a random packing of ``--formula-units`` SiO2 (192 atoms by default, so that atoms lie beyond
9 Å), relaxed with FIRE, then Langevin MD at ``--temperature`` so it is a melt; then
:func:`aiida_liqcryst.analysis.locality.locality_floor` for each sigma. Melts and results are cached in
``--workdir`` (a rerun resumes). One thread:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/locality.py --workdir locality-work --json locality.json
    python benchmarks/locality.py --quick          # smoke test: 2 centres, 2 cut-offs, a short MD
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')


def melt(path: pathlib.Path, formula_units: int, density: float, relax_steps: int, md_steps: int,
         temperature: float, seed: int):
    """The last MD frame (cached: extxyz, and json beside it) and the rms displacements of the MD (Å per
    component), with the rms force component of the last frame (eV/Å) for scale."""
    import ase.io

    from aiida_liqcryst.engines import oracle
    from aiida_liqcryst.structures.random_packing import random_packing

    if path.exists():
        return ase.io.read(path), json.loads(path.with_suffix('.json').read_text())
    start = time.time()
    atoms = oracle.relax(random_packing({'Si': 1, 'O': 2}, formula_units, density, 1.5, seed), relax_steps)
    every = max(1, md_steps // 10)
    frames = oracle.md_frames(atoms, md_steps, temperature, 1.0, every, seed=seed)
    # positions are not wrapped by the MD: differences are true displacements
    traj = np.array([frame.get_positions() for frame, _ in frames])
    displacements = {f'lag_{lag * every}fs': float(np.sqrt(np.mean((traj[lag:] - traj[:-lag]) ** 2)))
                     for lag in sorted({1, len(traj) // 2, len(traj) - 1}) if 0 < lag < len(traj)}
    # rms deviation from the mean position over the whole window: a vibration amplitude
    displacements[f'about_mean_{md_steps}fs'] = float(np.sqrt(np.mean((traj - traj.mean(axis=0)) ** 2)))
    displacements['force_rms'] = float(np.sqrt(np.mean(frames[-1][1]['forces'] ** 2)))
    displacements['seconds'] = time.time() - start
    atoms = frames[-1][0]
    ase.io.write(path, atoms)
    path.with_suffix('.json').write_text(json.dumps(displacements))
    return atoms, displacements


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', default='locality-work', help='melts and runs (default: locality-work in the current folder)')
    parser.add_argument('--densities', type=float, nargs='+', default=[2.3, 3.3], help='g/cm^3')
    parser.add_argument('--formula-units', type=int, default=64)
    parser.add_argument('--cutoffs', type=float, nargs='+', default=[5.0, 6.0, 7.0, 8.0, 9.0])
    parser.add_argument('--sigmas', type=float, nargs='+', default=[0.1, 0.3], help='Å per component')
    parser.add_argument('--centres', type=int, default=16)
    parser.add_argument('--samples', type=int, default=2)
    parser.add_argument('--relax-steps', type=int, default=40)
    parser.add_argument('--md-steps', type=int, default=100)
    parser.add_argument('--temperature', type=float, default=3000.0)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--min-distance', type=float, default=0.0,
                        help='redraw displacements that bring two atoms closer than this (Å); 0: off')
    parser.add_argument('--quick', action='store_true', help='smoke test: 2 centres, cut-offs 5 and 9, 10 MD steps')
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args(argv)
    if args.quick:
        args.centres, args.cutoffs, args.md_steps, args.relax_steps = 2, [5.0, 9.0], 10, 5
        args.workdir = str(pathlib.Path(args.workdir) / 'quick')

    import torch

    from aiida_liqcryst.analysis.locality import locality_floor
    from aiida_liqcryst.engines.oracle import get_calculator

    torch.set_num_threads(1)
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    results = {'settings': {k: v for k, v in vars(args).items() if k != 'json'}, 'densities': {}}
    for density in args.densities:
        tag = f'd{density}_n{args.formula_units}_r{args.relax_steps}_md{args.md_steps}_T{args.temperature:g}_s{args.seed}'
        atoms, displacements = melt(workdir / f'melt_{tag}.extxyz', args.formula_units, density, args.relax_steps,
                                    args.md_steps, args.temperature, args.seed)
        distances = atoms.get_all_distances(mic=True)
        entry = {'cell_length': float(atoms.cell.lengths()[0]), 'n_atoms': len(atoms), 'md': displacements,
                 'max_mic_distance': float(distances.max()), 'floor': {}}
        print(f'{density} g/cm^3: {len(atoms)} atoms, cell {entry["cell_length"]:.2f} Å, largest minimum-image '
              f'distance {entry["max_mic_distance"]:.2f} Å; MD rms displacement per component (Å): '
              + ', '.join(f'{k} {v:.3f}' for k, v in displacements.items()), flush=True)
        for sigma in args.sigmas:
            cache = workdir / f'floor_{tag}_sigma{sigma}_c{args.centres}_n{args.samples}_rc{"-".join(map(str, args.cutoffs))}'
            cache = cache.with_name(cache.name + (f'_min{args.min_distance}' if args.min_distance else '') + '.json')
            if not cache.exists():
                start = time.time()
                floor = locality_floor(atoms, get_calculator(), args.cutoffs, sigma, args.centres, args.samples,
                                       rng=args.seed, log=lambda line: print('   ', line, flush=True),
                                       min_distance=args.min_distance or None)
                cache.write_text(json.dumps({'floor': floor, 'seconds': time.time() - start}))
            cached = json.loads(cache.read_text())
            entry['floor'][str(sigma)] = {**cached['floor'], 'seconds': cached['seconds']}
        results['densities'][str(density)] = entry

    print(f'\n{"density":>7} {"sigma":>5} {"rc":>4} {"moved":>6} {"floor rms":>9} {"max":>6} {"median":>6} {"rms vs ref":>10} '
          f'{"Si":>6} {"O":>6}   (eV/Å)')
    for density, entry in results['densities'].items():
        for sigma, floor in entry['floor'].items():
            for rc, row in floor.items():
                if rc == 'seconds':
                    continue
                by = row['rms_by_element']
                print(f'{density:>7} {sigma:>5} {float(rc):4.1f} {row["moved_mean"]:6.1f} {row["rms"]:9.4f} '
                      f'{row["max"]:6.3f} {row.get("median", np.nan):6.3f} {row["rms_change"]:10.4f} {by.get("Si", np.nan):6.3f} {by.get("O", np.nan):6.3f}')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
