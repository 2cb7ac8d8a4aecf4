"""Accuracy levers of DeePMD on oracle (SevenNet-0) SiO2 melt data: cut-off and network size at a fixed wall clock.

Bare ``dp --tf`` (no AiiDA). Stages, each cached under ``--workdir`` so a rerun only does what is missing:

1. data: oracle Langevin MD of random packings of 16 SiO2 (48 atoms), relaxed first; training and held-out
   trajectories at different densities and seeds, written as two deepmd npy systems (type_map O, Si).
2. sel: maximum neighbour counts per type within each rcut over all frames (+20 %).
3. for each network: a short run to measure s/batch, then ``numb_steps`` = budget / (s/batch), train, freeze,
   ``dp --tf test`` on the held-out and the training set.

    python benchmarks/levers.py --workdir levers-work --json levers.json
    python benchmarks/levers.py --quick                      # minutes: tiny data, 50 steps per network

Run on one thread (the script sets the thread variables for dp; the oracle runs in this process with torch set
to one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time

import numpy as np

THREADS = {name: '1' for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'TF_INTRA_OP_PARALLELISM_THREADS',
                                  'TF_INTER_OP_PARALLELISM_THREADS', 'DP_INTRA_OP_PARALLELISM_THREADS',
                                  'DP_INTER_OP_PARALLELISM_THREADS')}
os.environ.update(THREADS)

# the dp next to this python (the venv's), else the one on PATH
DP = str(pathlib.Path(sys.executable).parent / 'dp') if (pathlib.Path(sys.executable).parent / 'dp').exists() else 'dp'
TYPE_MAP = ['O', 'Si']
FULL = {
    'train': {'densities': [2.3, 2.7, 3.1, 3.5], 'temperatures': [3000, 4000], 'steps': 200, 'every': 10, 'seed0': 0},
    'heldout': {'densities': [2.5, 3.3], 'temperatures': [3000, 4000], 'steps': 100, 'every': 10, 'seed0': 100},
    'relax_steps': 40,
}
QUICK = {
    'train': {'densities': [2.3, 3.5], 'temperatures': [3000], 'steps': 20, 'every': 10, 'seed0': 0},
    'heldout': {'densities': [2.5], 'temperatures': [3000], 'steps': 20, 'every': 10, 'seed0': 100},
    'relax_steps': 5,
}
NETS = {
    'A': {'rcut': 5.0, 'rcut_smth': 2.0, 'neuron': [16, 32], 'axis_neuron': 4, 'fitting': [64, 64]},
    'B': {'rcut': 6.0, 'rcut_smth': 2.0, 'neuron': [25, 50, 100], 'axis_neuron': 12, 'fitting': [128, 128, 128]},
    'C': {'rcut': 7.0, 'rcut_smth': 2.0, 'neuron': [25, 50, 100], 'axis_neuron': 12, 'fitting': [128, 128, 128]},
}


# ------------------------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------------------------

def trajectory(path: pathlib.Path, density: float, temperature: float, seed: int, steps: int, every: int,
               relax_steps: int) -> dict:
    """Oracle MD frames of one random packing, cached in ``path`` (npz); atoms sorted O first, then Si."""
    if path.exists():
        return dict(np.load(path))
    import torch

    from aiida_liqcryst.engines import oracle
    from aiida_liqcryst.structures.random_packing import random_packing

    torch.set_num_threads(1)
    start = time.time()
    atoms = random_packing({'Si': 1, 'O': 2}, 16, density, 1.5, seed)
    atoms = atoms[np.argsort([TYPE_MAP.index(s) for s in atoms.get_chemical_symbols()], kind='stable')]
    atoms = oracle.relax(atoms, relax_steps)
    frames = oracle.md_frames(atoms, steps, temperature, 1.0, every, seed=seed)
    data = {
        'types': np.array([TYPE_MAP.index(s) for s in atoms.get_chemical_symbols()]),
        'coord': np.array([f.get_positions().ravel() for f, _ in frames]),
        'box': np.array([f.get_cell().array.ravel() for f, _ in frames]),
        'energy': np.array([lab['energy'] for _, lab in frames]),
        'force': np.array([lab['forces'].ravel() for _, lab in frames]),
        'virial': np.array([lab['virial'].ravel() for _, lab in frames]),
        # mean square displacement from the first frame (Å^2): tells whether the packing melted
        'msd': np.array(np.mean(np.sum((frames[-1][0].get_positions() - frames[0][0].get_positions()) ** 2, 1))),
    }
    np.savez(path, **data)
    print(f'  {path.name}: {len(frames)} frames, {time.time() - start:.0f} s, MSD {data["msd"]:.2f} Å^2', flush=True)
    return data


def build_system(workdir: pathlib.Path, name: str, spec: dict, relax_steps: int) -> pathlib.Path:
    """One deepmd npy system ``workdir/name`` from all trajectories of ``spec`` (all 48 atoms, same type order)."""
    cache = workdir / 'cache'
    cache.mkdir(parents=True, exist_ok=True)
    parts, seed = [], spec['seed0']
    for density in spec['densities']:
        for temperature in spec['temperatures']:
            path = cache / f'{name}_d{density}_T{temperature}_s{seed}_n{spec["steps"]}.npz'
            parts.append(trajectory(path, density, temperature, seed, spec['steps'], spec['every'], relax_steps))
            seed += 1
    system = workdir / name
    (system / 'set.000').mkdir(parents=True, exist_ok=True)
    np.savetxt(system / 'type.raw', parts[0]['types'], fmt='%d')
    (system / 'type_map.raw').write_text('\n'.join(TYPE_MAP) + '\n')
    for key in ('coord', 'box', 'energy', 'force', 'virial'):
        np.save(system / 'set.000' / f'{key}.npy', np.concatenate([p[key] for p in parts]))
    return system


def max_neighbours(systems, rcut: float) -> list[int]:
    """Largest number of O and of Si neighbours within ``rcut`` of any atom in any frame (the deepmd ``sel``)."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list

    counts = np.zeros(len(TYPE_MAP), dtype=int)
    for system in systems:
        types = np.loadtxt(system / 'type.raw', dtype=int)
        coords = np.load(system / 'set.000' / 'coord.npy')
        boxes = np.load(system / 'set.000' / 'box.npy')
        for coord, box in zip(coords, boxes):
            atoms = Atoms(numbers=np.array([8, 14])[types], positions=coord.reshape(-1, 3), cell=box.reshape(3, 3),
                          pbc=True)
            i, j = neighbor_list('ij', atoms, rcut)
            for t in range(len(TYPE_MAP)):
                counts[t] = max(counts[t], np.bincount(i[types[j] == t], minlength=len(atoms)).max())
    return counts.tolist()


# ------------------------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------------------------

def dp(args: str, cwd: pathlib.Path, log: str) -> float:
    """Seconds of ``dp --tf <args>`` in ``cwd`` (output to ``log``); raises on failure."""
    start = time.time()
    with open(cwd / log, 'w') as handle:
        subprocess.run([DP, '--tf', *args.split()], cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, check=True,
                       env={**os.environ, **THREADS})
    return time.time() - start


def input_json(net: dict, sel: list[int], train: pathlib.Path, steps: int) -> dict:
    return {
        'model': {
            'type_map': TYPE_MAP,
            'descriptor': {'type': 'se_e2_a', 'rcut': net['rcut'], 'rcut_smth': net['rcut_smth'], 'sel': sel,
                           'neuron': net['neuron'], 'axis_neuron': net['axis_neuron'], 'seed': 1},
            'fitting_net': {'neuron': net['fitting'], 'seed': 1},
        },
        # exp decay: deepmd derives the rate so that the rate reaches stop_lr at numb_steps
        'learning_rate': {'type': 'exp', 'start_lr': 1e-3, 'stop_lr': 3e-5, 'decay_steps': max(1, steps // 50)},
        'loss': {'type': 'ener', 'start_pref_e': 0.02, 'limit_pref_e': 1.0, 'start_pref_f': 1000.0,
                 'limit_pref_f': 1.0, 'start_pref_v': 0.02, 'limit_pref_v': 0.1},
        'training': {'training_data': {'systems': [str(train)], 'batch_size': 1}, 'numb_steps': steps,
                     'disp_freq': max(1, steps // 20), 'save_freq': steps, 'seed': 1},
    }


def s_per_batch(log: pathlib.Path) -> float | None:
    """deepmd's own 'average training time: X s/batch' (excludes the first batches)."""
    match = re.search(r'average training time:\s*([0-9.eE+-]+)\s*s/batch', log.read_text())
    return float(match.group(1)) if match else None


def dp_test(model: pathlib.Path, system: pathlib.Path, cwd: pathlib.Path, log: str) -> dict:
    """Energy RMSE/atom (meV/atom), force RMSE (eV/Å) and virial RMSE/atom (meV/atom) of ``dp test``."""
    dp(f'test -m {model} -s {system} -n 0', cwd, log)
    text = (cwd / log).read_text()

    def value(pattern):
        return float(re.findall(pattern + r'\s*:\s*([0-9.eE+-]+)', text)[-1])

    return {'energy_rmse_meV_atom': 1000 * value(r'Energy RMSE/Natoms'), 'force_rmse': value(r'Force\s+RMSE'),
            'virial_rmse_meV_atom': 1000 * value(r'Virial RMSE/Natoms')}


def run_net(workdir: pathlib.Path, name: str, net: dict, sel: list[int], train, heldout, budget: float,
            steps: int | None, timing_steps: int) -> dict:
    """Measure s/batch with a short run, train for ``budget`` s (or ``steps``), freeze, test."""
    run = workdir / 'runs' / (name if steps is None or budget == 0 else f'{name}_{steps}steps')
    if (run / 'result.json').exists():  # done before: a rerun only adds what is missing
        return json.loads((run / 'result.json').read_text())
    run.mkdir(parents=True, exist_ok=True)
    if steps is None:
        (run / 'timing').mkdir(exist_ok=True)
        (run / 'timing' / 'input.json').write_text(json.dumps(input_json(net, sel, train, timing_steps), indent=1))
        dp('train input.json', run / 'timing', 'train.log')
        steps = max(100, int(budget / s_per_batch(run / 'timing' / 'train.log')) // 100 * 100)
    (run / 'input.json').write_text(json.dumps(input_json(net, sel, train, steps), indent=1))
    train_s = dp('train input.json', run, 'train.log')
    freeze_s = dp('freeze -o frozen.pb', run, 'freeze.log')
    result = {'net': name, **net, 'sel': sel, 'numb_steps': steps, 'train_wall_s': round(train_s, 1),
              's_per_batch': s_per_batch(run / 'train.log'), 'freeze_s': round(freeze_s, 1),
              'heldout': dp_test(run / 'frozen.pb', heldout, run, 'test_heldout.log'),
              'train': dp_test(run / 'frozen.pb', train, run, 'test_train.log')}
    (run / 'result.json').write_text(json.dumps(result, indent=1))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--workdir', default='levers-work', help='data cache and runs (default: levers-work in the current folder)')
    parser.add_argument('--quick', action='store_true', help='tiny data and 50 steps per network (a smoke test)')
    parser.add_argument('--nets', nargs='+', default=list(NETS), choices=list(NETS))
    parser.add_argument('--budget', type=float, default=400.0, help='training wall seconds per network')
    parser.add_argument('--steps', type=int, help='numb_steps for every network instead of --budget (no timing run;'
                        ' for a fair comparison on a loaded machine, where s/batch is not reproducible)')
    parser.add_argument('--long', choices=[*NETS, 'best'],
                        help='also train this network (best: of B and C, by held-out force RMSE) for twice its steps')
    parser.add_argument('--data-only', action='store_true', help='only generate the data and the sel')
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    workdir = pathlib.Path(args.workdir) / ('quick' if args.quick else '')
    start = time.time()
    train = build_system(workdir, 'train', plan['train'], plan['relax_steps'])
    heldout = build_system(workdir, 'heldout', plan['heldout'], plan['relax_steps'])
    data_s = time.time() - start
    sels = {name: [int(np.ceil(1.2 * n)) for n in max_neighbours([train, heldout], net['rcut'])]
            for name, net in NETS.items()}
    print(f'data: {len(np.load(train / "set.000/energy.npy"))} train, {len(np.load(heldout / "set.000/energy.npy"))}'
          f' held-out frames ({data_s:.0f} s); sel (O, Si) with 20 % margin: {sels}', flush=True)
    results = {'data_s': round(data_s, 1), 'sel': sels, 'runs': []}
    if not args.data_only:
        for name in args.nets:
            steps = 50 if args.quick else args.steps
            results['runs'].append(run_net(workdir, name, NETS[name], sels[name], train, heldout, args.budget, steps,
                                           timing_steps=20 if args.quick else 300))
            print(json.dumps(results['runs'][-1]), flush=True)
        if args.long:
            candidates = [r for r in results['runs']
                          if r['net'] == args.long or (args.long == 'best' and r['net'] in ('B', 'C'))]
            base = min(candidates, key=lambda r: r['heldout']['force_rmse'])
            name = base['net']
            results['runs'].append({**run_net(workdir, f'{name}_long', NETS[name], sels[name], train, heldout, 0,
                                              2 * base['numb_steps'], 0), 'net': f'{name}_long'})
        print(f'\n{"net":8} {"rcut":>4} {"steps":>6} {"s/batch":>8} {"wall s":>7}  held-out E meV/at  F eV/Å'
              f'   train E meV/at  F eV/Å')
        for r in results['runs']:
            print(f'{r["net"]:8} {r["rcut"]:4.1f} {r["numb_steps"]:6d} {r["s_per_batch"] or 0:8.4f} '
                  f'{r["train_wall_s"]:7.0f}  {r["heldout"]["energy_rmse_meV_atom"]:16.2f} '
                  f'{r["heldout"]["force_rmse"]:7.3f}   {r["train"]["energy_rmse_meV_atom"]:14.2f} '
                  f'{r["train"]["force_rmse"]:7.3f}')
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    raise SystemExit(main())
