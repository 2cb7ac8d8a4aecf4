"""Compressed (``dp compress``) against uncompressed models: exploration speed and the accuracy it costs.

    verdi -p liqcryst run benchmarks/compress.py <ExploreMDCalculation PK> [--steps 2000] [--repeats 2] [--json out.json]

Takes a finished ExploreMDCalculation (e.g. one of the demo loop's last iteration): compresses each model of its
ensemble with ``dp compress`` of the models' own backend (the ``dp`` code's executable and environment), then runs the very LAMMPS input
it wrote for ``steps`` MD steps, bare, in the ``lmp`` code's environment: with the models as they are and with the
compressed ones under the same file names, ``repeats`` times each, alternating (the fastest run of each counts).
Accuracy: both versions of every model predict the frames the models were trained on; the table gives the energy
and force differences between them and each one's error against the reference labels.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import shutil
import sys
import tempfile

import numpy as np
from aiida import orm

sys.path.insert(0, str(pathlib.Path(sys.argv[0]).resolve().parent))  # `verdi run` names this file in argv[0]
from shared import run_with_code  # noqa: E402


def predictions(model: pathlib.Path, frames: list[dict], type_map: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Energies per atom (n) and forces (n, natoms, 3) of ``model`` on ``frames`` (one system: same atoms)."""
    from deepmd.infer import DeepPot

    pot = DeepPot(str(model))
    types = [type_map.index(s) for s in frames[0]['symbols']]
    coords = np.array([f['positions'].ravel() for f in frames])
    cells = np.array([f['cell'].ravel() for f in frames])
    energy, forces, _ = pot.eval(coords, cells, types)
    return energy.ravel() / len(types), forces.reshape(len(frames), len(types), 3)


def accuracy(original: pathlib.Path, compressed: pathlib.Path, dataset) -> dict:
    frames = dataset.get_frames()
    groups: dict[int, list[dict]] = {}
    for frame in frames:  # deepmd evaluates one atom count at a time
        groups.setdefault(len(frame['symbols']), []).append(frame)
    e_ref, f_ref, e_o, f_o, e_c, f_c = [], [], [], [], [], []
    for group in groups.values():
        e_ref.append(np.array([f['energy'] for f in group]) / len(group[0]['symbols']))
        f_ref.append(np.array([f['forces'] for f in group]).ravel())
        for model, es, fs in ((original, e_o, f_o), (compressed, e_c, f_c)):
            e, f = predictions(model, group, dataset.type_map)
            es.append(e)
            fs.append(f.ravel())
    e_ref, f_ref, e_o, f_o, e_c, f_c = (np.concatenate(a) for a in (e_ref, f_ref, e_o, f_o, e_c, f_c))
    rms = lambda a, b: float(np.sqrt(np.mean((a - b) ** 2)))  # noqa: E731
    return {
        'frames': len(frames),
        'energy_rmse_mev_per_atom': {'original': round(1e3 * rms(e_o, e_ref), 2), 'compressed': round(1e3 * rms(e_c, e_ref), 2)},
        'force_rmse': {'original': round(rms(f_o, f_ref), 4), 'compressed': round(rms(f_c, f_ref), 4)},
        'compressed_vs_original': {
            'energy_max_mev_per_atom': round(1e3 * float(np.max(np.abs(e_c - e_o))), 4),
            'force_rms': float(f'{rms(f_c, f_o):.3g}'),
            'force_max': float(f'{np.max(np.abs(f_c - f_o)):.3g}'),
        },
    }


def benchmark(calc: orm.CalcJobNode, steps: int, repeats: int = 2) -> dict:
    dp = orm.load_code('dp@localhost')
    lmp = calc.inputs.code
    source = pathlib.Path(calc.outputs.remote_folder.get_remote_path())
    backend = calc.inputs.potentials[sorted(calc.inputs.potentials)[0]].deepmd_backend
    models = sorted(p.name for p in source.iterdir() if p.suffix == backend.suffix)
    with tempfile.TemporaryDirectory() as tmp:
        plain, packed = pathlib.Path(tmp, 'plain'), pathlib.Path(tmp, 'compressed')
        for folder in (plain, packed):
            folder.mkdir()
            for path in source.iterdir():
                if path.suffix in (backend.suffix, '.lammps', '.data'):
                    shutil.copy(path, folder)
            script = (folder / 'input.lammps').read_text()
            (folder / 'input.lammps').write_text(re.sub(r'^run\s+\d+', f'run {steps}', script, flags=re.MULTILINE))
        compress_seconds = 0.0
        for name in models:
            compress_seconds += run_with_code(dp, f'{backend.flag} compress -i {name} -o c_{name}', packed)
            (packed / f'c_{name}').replace(packed / name)
        # alternate the two and keep each one's fastest run: the first run of all also warms the file cache
        seconds = {'original': float('inf'), 'compressed': float('inf')}
        for _ in range(repeats):
            for key, folder in (('original', plain), ('compressed', packed)):
                seconds[key] = min(seconds[key], run_with_code(lmp, '-in input.lammps', folder))
        potential = calc.inputs.potentials[sorted(calc.inputs.potentials)[0]]
        dataset = next(iter(potential.creator.inputs.datasets.values()))
        first = models[0]
        errors = accuracy(plain / first, packed / first, dataset)
    natoms = len(calc.inputs.structure.sites)
    rate = lambda s: round(natoms * steps / s / 1000, 2)  # noqa: E731
    return {
        'calculation': calc.pk, 'backend': backend.name, 'atoms': natoms, 'steps': steps, 'models': len(models), 'repeats': repeats,
        'compress_seconds_per_model': round(compress_seconds / len(models), 1),
        'seconds': {k: round(v, 1) for k, v in seconds.items()},
        'katom_steps_per_s': {k: rate(v) for k, v in seconds.items()},
        'speedup': round(seconds['original'] / seconds['compressed'], 2),
        'accuracy_model': first, **errors,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('calculation', help='PK or UUID of a finished ExploreMDCalculation')
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--repeats', type=int, default=2, help='runs of each variant, alternating; the fastest counts')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    r = benchmark(orm.load_node(args.calculation), args.steps, args.repeats)
    print(f"{r['atoms']} atoms, {r['steps']} steps, {r['models']} models: original {r['seconds']['original']} s "
          f"({r['katom_steps_per_s']['original']} katom-steps/s), compressed {r['seconds']['compressed']} s "
          f"({r['katom_steps_per_s']['compressed']}): speedup {r['speedup']}x; dp compress {r['compress_seconds_per_model']} s per model")
    d = r['compressed_vs_original']
    print(f"accuracy on {r['frames']} training frames ({r['accuracy_model']}): energy RMSE {r['energy_rmse_mev_per_atom']} "
          f"meV/atom, force RMSE {r['force_rmse']} eV/Å; compressed - original: energy max {d['energy_max_mev_per_atom']} "
          f"meV/atom, force RMS {d['force_rms']} / max {d['force_max']} eV/Å")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
