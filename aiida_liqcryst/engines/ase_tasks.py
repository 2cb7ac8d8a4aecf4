"""``aiida-liqcryst-ase``: one batch of structures, one ASE calculator, one task (label, relax, eos, md).

Run in a folder holding ``settings.json``, ``structures.extxyz`` (the batch, one frame per structure, in the
order of ``settings['names']``) and, for ``calculator: deepmd``, the frozen model ``model.pb`` (TensorFlow) or
``model.pth`` (PyTorch).

``settings.json``: ``{"task": ..., "calculator": "oracle" | "deepmd", "names": [...], <task parameters>}``,
the task parameters of :data:`TASK_DEFAULTS` and ``threads`` (PyTorch threads, default 1), checked by
:func:`check_settings`, which the AiiDA ``AseCalculation`` also calls before submission.

Everything is written to ``outputs/``:

- ``summary.json``: ``{task, calculator, structures: {name: {status: 'ok' | 'failed', error, <scalars>}}}``,
  rewritten after every structure, so a killed job still says what was done;
- ``<name>.results.npz``: the arrays of the task (see :func:`run_structure`);
- ``<name>.final.extxyz``: the final geometry (relaxed; for ``eos`` the relaxed one at the starting volume;
  for ``md`` the last frame, of the supercell);
- ``<name>.trajectory.npz`` (``md``): ``positions`` (Å), ``velocities`` (Å/fs), ``cells`` (Å), ``times`` (fs),
  ``steps``, ``potential_energy`` / ``kinetic_energy`` (eV), ``temperature`` (K), ``numbers``, ``masses`` (amu).

A structure that raises is recorded as failed (with the error) and the batch goes on; the exit status is
0 when every structure worked, 2 when some failed, 1 when the calculator or the input could not be read.
Units: Å, eV, GPa (pressure), K, fs.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
import traceback

import numpy as np

from aiida_liqcryst.deepmd.backends import BACKENDS

TASKS = ('label', 'relax', 'eos', 'md')
CALCULATORS = ('oracle', 'deepmd')
OPTIMIZERS = ('FIRE', 'BFGS')
ENSEMBLES = ('langevin', 'nve')
MODEL_STEM = 'model'  # the model is model.pb or model.pth: deepmd picks the backend by the suffix
MODEL_SUFFIXES = tuple(backend.suffix for backend in BACKENDS.values())
STRUCTURES_FILE = 'structures.extxyz'
SETTINGS_FILE = 'settings.json'
OUTPUT_DIR = 'outputs'
SUMMARY_FILE = 'summary.json'

_RELAX = {'pressure': 0.0, 'fmax': 0.05, 'steps': 200, 'optimizer': 'FIRE'}
TASK_DEFAULTS = {
    'label': {},
    # cell: relax the cell too (else positions only); fixed_volume: cell shape at constant volume.
    'relax': {**_RELAX, 'cell': True, 'fixed_volume': False},
    # relax: relax positions + cell at `pressure` first (else scan around the input volume);
    # scan_steps: steps of the positions + cell-shape relaxation at each fixed volume (0: rigid scaling).
    'eos': {**_RELAX, 'volume_fractions': None, 'relax': True, 'scan_steps': 50},
    # timestep fs, friction 1/fs (Langevin); equilibration_steps run with Langevin and are not recorded.
    'md': {
        'temperature': None, 'steps': None, 'timestep': 1.0, 'every': 10, 'ensemble': 'langevin',
        'friction': 0.01, 'equilibration_steps': 0, 'supercell': [1, 1, 1], 'seed': 0,
    },
}
# Settings of every task. threads: PyTorch threads of the calculator. One is the default: cells of tens of
# atoms gain nothing from more, and spin-waiting threads slow a job tenfold when jobs share the cores.
COMMON_DEFAULTS = {'threads': 1}
REQUIRED = {'eos': ('volume_fractions',), 'md': ('temperature', 'steps')}
PRIVATE = ('task', 'calculator', 'names')  # keys the CalcJob adds


def check_settings(settings: dict) -> dict:
    """The settings of one task with defaults filled in and numbers cast (AiiDA stores 1.0 as 1).

    :raises ValueError: naming the bad key and what it should be.
    """
    if not isinstance(settings, dict):
        raise ValueError(f'settings must be a dict, got {type(settings).__name__}')
    task = settings.get('task')
    if task not in TASKS:
        raise ValueError(f'settings: unknown task {task!r}; choose one of {TASKS}')
    defaults = {**COMMON_DEFAULTS, **TASK_DEFAULTS[task]}
    unknown = set(settings) - set(defaults) - set(PRIVATE)
    if unknown:
        raise ValueError(f'settings: unknown key(s) {sorted(unknown)} for task {task!r}; allowed: {sorted(defaults)}')
    out = {**defaults, **settings}
    for key in REQUIRED.get(task, ()):
        if out.get(key) is None:
            raise ValueError(f'settings: task {task!r} needs {key!r}')
    if 'calculator' in out and out['calculator'] not in CALCULATORS:
        raise ValueError(f'settings: calculator must be one of {CALCULATORS}, got {out["calculator"]!r}')

    def number(key, kind=float, minimum=None, strict=False):
        try:
            value = kind(out[key])
        except (TypeError, ValueError):
            raise ValueError(f'settings: {key!r} must be a {kind.__name__}, got {out[key]!r}') from None
        if kind is int and value != out[key]:
            raise ValueError(f'settings: {key!r} must be a whole number, got {out[key]!r}')
        if not math.isfinite(value):
            raise ValueError(f'settings: {key!r} must be finite, got {out[key]!r}')
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise ValueError(f'settings: {key!r} must be {">" if strict else ">="} {minimum}, got {out[key]!r}')
        out[key] = value

    number('threads', int, minimum=1)
    if task in ('relax', 'eos'):
        number('pressure')
        number('fmax', minimum=0, strict=True)
        number('steps', int, minimum=0)
        if out['optimizer'] not in OPTIMIZERS:
            raise ValueError(f'settings: optimizer must be one of {OPTIMIZERS}, got {out["optimizer"]!r}')
    if task == 'relax':
        for key in ('cell', 'fixed_volume'):
            if not isinstance(out[key], bool):
                raise ValueError(f'settings: {key!r} must be true or false, got {out[key]!r}')
        if out['fixed_volume'] and not out['cell']:
            raise ValueError("settings: 'fixed_volume' relaxes the cell shape: it needs 'cell': true")
    if task == 'eos':
        number('scan_steps', int, minimum=0)
        if not isinstance(out['relax'], bool):
            raise ValueError(f"settings: 'relax' must be true or false, got {out['relax']!r}")
        fractions = out['volume_fractions']
        if not isinstance(fractions, (list, tuple)) or len(fractions) < 1:
            raise ValueError(f"settings: 'volume_fractions' must be a non-empty list, got {fractions!r}")
        try:
            fractions = [float(f) for f in fractions]
        except (TypeError, ValueError):
            raise ValueError(f"settings: 'volume_fractions' must be numbers, got {out['volume_fractions']!r}") from None
        if not all(math.isfinite(f) and f > 0 for f in fractions):
            raise ValueError(f"settings: 'volume_fractions' must be positive (V/V0), got {fractions}")
        if len(set(fractions)) != len(fractions):
            raise ValueError(f"settings: 'volume_fractions' must be distinct, got {fractions}")
        out['volume_fractions'] = fractions
    if task == 'md':
        number('temperature', minimum=0, strict=True)
        number('steps', int, minimum=1)
        number('timestep', minimum=0, strict=True)
        number('every', int, minimum=1)
        number('friction', minimum=0, strict=True)
        number('equilibration_steps', int, minimum=0)
        number('seed', int, minimum=0)
        if out['ensemble'] not in ENSEMBLES:
            raise ValueError(f'settings: ensemble must be one of {ENSEMBLES}, got {out["ensemble"]!r}')
        supercell = out['supercell']
        if (
            not isinstance(supercell, (list, tuple)) or len(supercell) != 3
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in supercell)
        ):
            raise ValueError(f"settings: 'supercell' must be three positive integers, got {supercell!r}")
        out['supercell'] = [int(n) for n in supercell]
    return out


def set_threads(threads: int) -> None:
    """Use ``threads`` threads in PyTorch (SevenNet and DeePMD); call before the calculator is made."""
    import os

    for variable in ('OMP_NUM_THREADS', 'DP_INTRA_OP_PARALLELISM_THREADS'):
        os.environ[variable] = str(threads)
    os.environ['DP_INTER_OP_PARALLELISM_THREADS'] = '1'
    import torch

    torch.set_num_threads(threads)


def get_calculator(name: str, folder: pathlib.Path = pathlib.Path('.')):
    """The ASE calculator: the oracle (SevenNet-0) or the DeePMD model (``model.pb`` or ``model.pth``) in ``folder``."""
    if name == 'oracle':
        from aiida_liqcryst.engines import oracle

        return oracle.get_calculator()
    if name == 'deepmd':
        models = [path for suffix in MODEL_SUFFIXES if (path := folder / f'{MODEL_STEM}{suffix}').is_file()]
        if len(models) != 1:
            names = ' or '.join(f'{MODEL_STEM}{suffix}' for suffix in MODEL_SUFFIXES)
            raise FileNotFoundError(f'calculator deepmd needs one model file, {names}, in {folder.resolve()}')
        model = models[0]
        from deepmd.calculator import DP

        return DP(model=str(model))
    raise ValueError(f'unknown calculator {name!r}; choose one of {CALCULATORS}')


def _require_3d(atoms, task):
    if not all(atoms.pbc) or atoms.cell.rank != 3 or atoms.get_volume() <= 0:
        raise ValueError(f'task {task!r} needs a periodic structure with a 3D cell (pbc {atoms.pbc.tolist()})')


def pressure_gpa(atoms) -> float:
    """Pressure (GPa, positive = compressed) from the stress of the attached calculator."""
    from ase.units import GPa

    return float(-np.trace(atoms.get_stress(voigt=False)) / 3.0 / GPa)


def relax(atoms, calculator, pressure=0.0, fmax=0.05, steps=200, optimizer='FIRE', cell=True, fixed_volume=False):
    """Relax ``atoms`` (a copy) in place: positions, plus the cell at ``pressure`` GPa when ``cell``.

    ``fixed_volume``: the cell shape only, at constant volume (``FrechetCellFilter(constant_volume=True)``;
    the pressure then does not enter). Returns ``(atoms, info)`` with info ``steps``, ``converged``, ``fmax``
    (largest generalised force at the end, eV/Å, cell components included).
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE
    from ase.units import GPa

    atoms = atoms.copy()
    atoms.calc = calculator
    if cell:
        target = FrechetCellFilter(atoms, scalar_pressure=0.0 if fixed_volume else pressure * GPa, constant_volume=fixed_volume)
    else:
        target = atoms
    opt = {'FIRE': FIRE, 'BFGS': BFGS}[optimizer](target, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps)) if steps > 0 else False
    residual = float(np.sqrt((target.get_forces() ** 2).sum(axis=1).max()))
    return atoms, {'steps': int(opt.nsteps), 'converged': converged or residual < fmax, 'fmax': residual}


def _thermo(atoms, pressure=0.0) -> dict:
    from ase.units import GPa

    energy = float(atoms.get_potential_energy())
    volume = float(atoms.get_volume())
    return {
        'energy': energy,
        'volume': volume,
        'pressure': pressure_gpa(atoms),
        'enthalpy': energy + pressure * GPa * volume,
        'natoms': len(atoms),
    }


def task_label(atoms, calculator, settings):
    from aiida_liqcryst.engines.oracle import label_atoms

    _require_3d(atoms, 'label')  # the label contract has a virial
    if settings['calculator'] == 'oracle':
        label = label_atoms(atoms)  # the oracle's own labelling: same numbers as every other oracle label
    else:
        atoms = atoms.copy()
        atoms.calc = calculator
        label = {'energy': float(atoms.get_potential_energy()), 'forces': atoms.get_forces()}
        label['virial'] = -atoms.get_stress(voigt=False) * atoms.get_volume()  # the oracle's convention
    arrays = {'energy': np.array([label['energy']]), 'forces': np.asarray(label['forces']), 'virial': np.asarray(label['virial'])}
    return atoms, arrays, {'energy': label['energy'], 'natoms': len(atoms)}, None


def task_relax(atoms, calculator, settings):
    _require_3d(atoms, 'relax')  # volume, pressure and enthalpy are reported for every relaxation
    start = atoms.copy()
    start.calc = calculator
    initial_energy = float(start.get_potential_energy())
    if not math.isfinite(initial_energy):
        raise FloatingPointError(f'non-finite energy of the starting structure from the {settings["calculator"]} calculator')
    keys = ('pressure', 'fmax', 'steps', 'optimizer', 'cell', 'fixed_volume')
    final, info = relax(atoms, calculator, **{k: settings[k] for k in keys})
    scalars = {**_thermo(final, settings['pressure']), 'initial_energy': initial_energy, 'initial_volume': float(atoms.get_volume()), **info}
    scalars['target_pressure'] = settings['pressure']
    arrays = {k: np.array([scalars[k]]) for k in ('energy', 'volume', 'enthalpy', 'pressure', 'initial_energy')}
    arrays['forces'] = final.get_forces()
    return final, arrays, scalars, None


def task_eos(atoms, calculator, settings):
    _require_3d(atoms, 'eos')
    relax_keys = ('pressure', 'fmax', 'optimizer')
    if settings['relax']:
        start, info = relax(atoms, calculator, steps=settings['steps'], **{k: settings[k] for k in relax_keys})
    else:
        start, info = atoms.copy(), {'steps': 0, 'converged': False, 'fmax': float('nan')}
    v_start = start.get_volume()
    rows = []
    for fraction in settings['volume_fractions']:
        scaled = start.copy()
        scaled.set_cell(start.cell * fraction ** (1.0 / 3.0), scale_atoms=True)
        scaled, scan = relax(
            scaled, calculator, steps=settings['scan_steps'], fmax=settings['fmax'], optimizer=settings['optimizer'],
            cell=True, fixed_volume=True,
        )
        rows.append((fraction, _thermo(scaled), scan, scaled))
    arrays = {
        'volume_fractions': np.array([r[0] for r in rows]),
        'volumes': np.array([r[1]['volume'] for r in rows]),
        'energies': np.array([r[1]['energy'] for r in rows]),
        'pressures': np.array([r[1]['pressure'] for r in rows]),
        'residual_fmax': np.array([r[2]['fmax'] for r in rows]),
        'cells': np.array([r[3].cell.array for r in rows]),
        'positions': np.array([r[3].positions for r in rows]),
        'numbers': start.numbers.copy(),
    }
    start.calc = calculator
    scalars = {
        **_thermo(start, settings['pressure']), 'relax_steps': info['steps'], 'relax_converged': info['converged'],
        'relax_fmax': info['fmax'], 'initial_volume': float(atoms.get_volume()), 'reference_volume': float(v_start),
        'points': len(rows), 'max_residual_fmax': float(np.nanmax(arrays['residual_fmax'])) if rows else None,
    }
    return start, arrays, scalars, None


def task_md(atoms, calculator, settings):
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    _require_3d(atoms, 'md')
    atoms = atoms.repeat(settings['supercell'])
    atoms.calc = calculator
    rng = np.random.default_rng(settings['seed'])
    temperature = settings['temperature']
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    dt = settings['timestep'] * units.fs

    def langevin():
        return Langevin(atoms, dt, temperature_K=temperature, friction=settings['friction'] / units.fs, rng=rng)

    if settings['equilibration_steps']:
        langevin().run(settings['equilibration_steps'])
    dyn = langevin() if settings['ensemble'] == 'langevin' else VelocityVerlet(atoms, dt)
    frames = {k: [] for k in ('positions', 'velocities', 'cells', 'steps', 'potential_energy', 'kinetic_energy', 'temperature')}

    def record():
        frames['positions'].append(atoms.get_positions())
        frames['velocities'].append(atoms.get_velocities() * units.fs)  # Å/fs
        frames['cells'].append(atoms.cell.array.copy())
        frames['steps'].append(dyn.nsteps)
        frames['potential_energy'].append(atoms.get_potential_energy())
        frames['kinetic_energy'].append(atoms.get_kinetic_energy())
        frames['temperature'].append(atoms.get_temperature())

    dyn.attach(record, interval=settings['every'])  # also records step 0
    dyn.run(settings['steps'])
    trajectory = {k: np.asarray(v) for k, v in frames.items()}
    if not np.all(np.isfinite(trajectory['positions'])) or not np.all(np.isfinite(trajectory['velocities'])):
        raise FloatingPointError('the MD produced non-finite positions or velocities (unstable potential or time step)')
    trajectory['times'] = trajectory['steps'] * settings['timestep']
    trajectory['numbers'] = atoms.numbers.copy()
    trajectory['masses'] = atoms.get_masses()
    production = slice(1, None) if len(trajectory['temperature']) > 1 else slice(None)
    scalars = {
        'natoms': len(atoms), 'frames': len(trajectory['steps']), 'mean_temperature': float(np.mean(trajectory['temperature'][production])),
        'mean_potential_energy': float(np.mean(trajectory['potential_energy'])), 'energy': float(trajectory['potential_energy'][-1]),
        'volume': float(atoms.get_volume()),
    }
    arrays = {k: trajectory[k] for k in ('potential_energy', 'kinetic_energy', 'temperature', 'times')}
    return atoms, arrays, scalars, trajectory


TASK_FUNCTIONS = {'label': task_label, 'relax': task_relax, 'eos': task_eos, 'md': task_md}


def run_structure(atoms, calculator, settings):
    """Run the task on one structure: ``(final_atoms, arrays, scalars, trajectory or None)``.

    arrays: ``label`` energy (1,), forces (N, 3), virial (3, 3) (the DEVELOPERS.md label);
    ``relax`` energy, volume, enthalpy, pressure, initial_energy (each (1,)) and forces;
    ``eos`` volume_fractions, volumes, energies, pressures, residual_fmax (npoints,), cells (npoints, 3, 3),
    positions (npoints, N, 3), numbers (N,); ``md`` potential_energy, kinetic_energy, temperature, times.
    """
    final, arrays, scalars, trajectory = TASK_FUNCTIONS[settings['task']](atoms, calculator, settings)
    bad = sorted(k for k, v in arrays.items() if np.asarray(v).dtype.kind == 'f' and not np.all(np.isfinite(v)))
    if bad:  # e.g. overlapping atoms: the calculator returns NaN instead of raising
        raise FloatingPointError(f'non-finite {", ".join(bad)} from the {settings["calculator"]} calculator')
    return final, arrays, scalars, trajectory


def _write_json(path: pathlib.Path, data: dict):
    tmp = path.with_suffix('.tmp')
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)  # atomic: a killed job leaves the previous summary, never half a file


def run(folder='.') -> int:
    """Run the batch described in ``folder``; returns the exit status (0 all ok, 2 some failed, 1 no start)."""
    import ase.io

    folder = pathlib.Path(folder)
    out = folder / OUTPUT_DIR
    out.mkdir(exist_ok=True)
    summary = {'task': None, 'calculator': None, 'structures': {}, 'error': None, 'finished': False}
    try:
        raw = json.loads((folder / SETTINGS_FILE).read_text())
        settings = check_settings(raw)
        settings['calculator'] = raw.get('calculator', 'oracle')
        summary.update(task=settings['task'], calculator=settings['calculator'])
        images = ase.io.read(folder / STRUCTURES_FILE, index=':', format='extxyz')
        names = raw.get('names') or [f'structure_{k}' for k in range(len(images))]
        if len(names) != len(images):
            raise ValueError(f'{len(names)} names but {len(images)} structures in {STRUCTURES_FILE}')
        set_threads(settings['threads'])
        calculator = get_calculator(settings['calculator'], folder)
    except Exception as exc:  # noqa: BLE001 - reported in the summary, read by the parser
        summary['error'] = f'{type(exc).__name__}: {exc}'
        summary['finished'] = True
        _write_json(out / SUMMARY_FILE, summary)
        traceback.print_exc()
        return 1
    summary['settings'] = {k: v for k, v in settings.items() if k != 'names'}
    for name in names:
        summary['structures'][name] = {'status': 'pending'}
    _write_json(out / SUMMARY_FILE, summary)

    failed = 0
    for name, atoms in zip(names, images):
        atoms.calc = None
        start, cpu = time.perf_counter(), time.process_time()
        print(f'[{settings["task"]}] {name}: {len(atoms)} atoms', flush=True)
        try:
            final, arrays, scalars, trajectory = run_structure(atoms, calculator, settings)
            np.savez(out / f'{name}.results.npz', **arrays)
            if trajectory is not None:
                np.savez(out / f'{name}.trajectory.npz', **trajectory)
            final = final.copy()
            final.calc = None
            ase.io.write(out / f'{name}.final.extxyz', final, format='extxyz')
            entry = {'status': 'ok', 'error': None, **scalars}
        except Exception as exc:  # noqa: BLE001 - one bad structure must not lose the batch
            failed += 1
            traceback.print_exc()
            entry = {'status': 'failed', 'error': f'{type(exc).__name__}: {exc}'}
        entry['seconds'] = round(time.perf_counter() - start, 3)
        entry['cpu_seconds'] = round(time.process_time() - cpu, 3)  # all threads: the cost without other load
        summary['structures'][name] = entry
        _write_json(out / SUMMARY_FILE, summary)
        print(f'[{settings["task"]}] {name}: {entry["status"]} in {entry["seconds"]} s', flush=True)
    summary['finished'] = True
    _write_json(out / SUMMARY_FILE, summary)
    return 2 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='aiida-liqcryst-ase', description=__doc__.split('\n')[0])
    parser.add_argument('folder', nargs='?', default='.', help='folder with settings.json and structures.extxyz')
    args = parser.parse_args(argv)
    return run(args.folder)


if __name__ == '__main__':
    sys.exit(main())
