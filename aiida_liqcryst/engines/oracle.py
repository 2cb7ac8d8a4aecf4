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


# ---------------------------------------------------------------------------------------------------------------------
# The console script ``aiida-liqcryst-oracle``: what OracleCalculation runs.
# ---------------------------------------------------------------------------------------------------------------------

STRUCTURES_FILE = 'structures.extxyz'
SETTINGS_FILE = 'settings.json'
LABELS_FILE = 'labels.extxyz'
RESULTS_FILE = 'results.json'
LOG_FILE = 'oracle.log'

#: per-frame keys in the extxyz files (prefixed: plain ``energy``/``forces`` would be taken over by ASE's calculator)
KEY = 'liqcryst_key'
SOURCE = 'liqcryst_source'
ENERGY = 'oracle_energy'
FORCES = 'oracle_forces'
VIRIAL = 'oracle_virial'

MD_DEFAULTS = {'friction': 0.01, 'seed': 0, 'skip': 0}  # friction in 1/fs


def validate_settings(settings: dict) -> str | None:
    """Return an error message for bad oracle settings, or None.

    Accepted keys: ``relax_steps`` (int >= 0) and ``fmax`` (float > 0, eV/Å) for a FIRE relaxation of the
    positions before labeling; ``md`` = {``steps``, ``every`` (ints > 0, every <= steps), ``temperature`` (K),
    ``timestep`` (fs), optional ``friction`` (1/fs) > 0, ``seed`` (int), ``skip`` (steps of equilibration whose
    frames are not kept, int >= 0, < steps)}: Langevin NVT MD whose frames every ``every`` steps (after ``skip``)
    are labeled instead of the structure itself.
    """
    if not isinstance(settings, dict):
        return f'settings must be a dict, got {type(settings).__name__}'
    unknown = set(settings) - {'relax_steps', 'fmax', 'md'}
    if unknown:
        return f'unknown oracle settings {sorted(unknown)}: allowed are relax_steps, fmax, md'
    if 'relax_steps' in settings and not _is_int(settings['relax_steps'], minimum=0):
        return f'relax_steps must be an integer >= 0, got {settings["relax_steps"]!r}'
    if 'fmax' in settings and not _is_positive(settings['fmax']):
        return f'fmax must be a positive number (eV/Å), got {settings["fmax"]!r}'
    if 'md' in settings:
        md = settings['md']
        if not isinstance(md, dict):
            return 'md must be a dict with steps, temperature, timestep, every'
        missing = {'steps', 'temperature', 'timestep', 'every'} - set(md)
        if missing:
            return f'md settings miss {sorted(missing)}'
        unknown = set(md) - {'steps', 'temperature', 'timestep', 'every', 'friction', 'seed', 'skip'}
        if unknown:
            return (f'unknown md settings {sorted(unknown)}: allowed are steps, temperature, timestep, every, friction, '
                    'seed, skip')
        for name in ('steps', 'every'):
            if not _is_int(md[name], minimum=1):
                return f'md.{name} must be a positive integer, got {md[name]!r}'
        if md['every'] > md['steps']:
            return f'md.every ({md["every"]}) must not exceed md.steps ({md["steps"]}): no frame would be labeled'
        for name in ('temperature', 'timestep', 'friction'):
            if name in md and not _is_positive(md[name]):
                return f'md.{name} must be a positive number, got {md[name]!r}'
        if 'seed' in md and not _is_int(md['seed'], minimum=0):
            return f'md.seed must be an integer >= 0, got {md["seed"]!r}'
        if 'skip' in md and not (_is_int(md['skip'], minimum=0) and md['skip'] + md['every'] <= md['steps']):
            return (f'md.skip must be an integer >= 0 that leaves at least one frame (skip + every <= steps = '
                    f'{md["steps"]}), got {md["skip"]!r}')
    return None


def _is_int(value, minimum: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def _is_positive(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and np.isfinite(value) and value > 0


class LabelError(RuntimeError):
    """The oracle returned a label that cannot be used (non-finite numbers)."""


def _checked(label: dict, atoms: Atoms) -> dict:
    """``label`` if it and the geometry are finite; else ``LabelError`` (NaN positions give a finite energy)."""
    if not np.all(np.isfinite(atoms.get_positions())) or not np.all(np.isfinite(atoms.get_cell().array)):
        raise LabelError('non-finite positions or cell (a relaxation or MD step blew up)')
    for name in ('energy', 'forces', 'virial'):
        if not np.all(np.isfinite(label[name])):
            raise LabelError(f'non-finite {name} (overlapping atoms or an exploded structure?)')
    return label


def md_frames(atoms: Atoms, steps: int, temperature: float, timestep: float, every: int, friction: float = 0.01,
              seed: int = 0, skip: int = 0) -> list[tuple[Atoms, dict]]:
    """Langevin NVT MD with the oracle; the frames at steps ``every``, ``2*every``, ... after the first ``skip``
    steps (equilibration), and their labels.

    :param temperature: K; ``timestep``: fs; ``friction``: 1/fs. Velocities from Maxwell-Boltzmann with ``seed``.
    """
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

    atoms = atoms.copy()
    atoms.calc = get_calculator()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs, rng=rng)
    frames = []
    for index in range(steps // every):
        dyn.run(every)
        if (index + 1) * every <= skip:
            continue
        # the calculator results of the last step belong to the current positions: no re-evaluation
        label = {
            'energy': float(atoms.get_potential_energy()),
            'forces': np.array(atoms.get_forces(), dtype=float),
            'virial': -np.array(atoms.get_stress(voigt=False), dtype=float) * atoms.get_volume(),
        }
        snapshot = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(),
                         pbc=atoms.get_pbc())
        frames.append((snapshot, _checked(label, snapshot)))
    return frames


def label_entry(key: str, atoms: Atoms, settings: dict) -> list[tuple[str, Atoms, dict]]:
    """The labeled frames of one input structure: ``[(key, atoms, label)]``, or ``<key>_f<i>`` for MD frames.

    :raises Exception: whatever the oracle raises (unknown element, ...), or ``LabelError`` for non-finite results.
    """
    relax_steps = int(settings.get('relax_steps', 0))
    if relax_steps or 'md' in settings:
        # fail fast on a broken input: FIRE and MD would carry NaN forces into NaN positions
        _checked(label_atoms(atoms), atoms)
    if relax_steps:
        atoms = relax(atoms, relax_steps, fmax=float(settings.get('fmax', 0.05)))
        atoms.calc = None
    if 'md' in settings:
        md = {**MD_DEFAULTS, **settings['md']}
        frames = md_frames(atoms, int(md['steps']), float(md['temperature']), float(md['timestep']), int(md['every']),
                           float(md['friction']), int(md['seed']), int(md['skip']))
        return [(f'{key}_f{i}', frame, label) for i, (frame, label) in enumerate(frames)]
    plain = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(),
                  pbc=atoms.get_pbc())
    return [(key, plain, _checked(label_atoms(plain), plain))]


def label_entries(entries, settings: dict | None = None, log=None) -> dict:
    """Label ``entries`` (an iterable of ``(key, Atoms)``), recording failures instead of stopping.

    :returns: dict with ``frames`` (list of ``(key, source_key, Atoms, label)``), ``failed`` ({key: reason}) and
        ``seconds`` ({key: wall seconds}).
    """
    import time

    settings = settings or {}
    frames, failed, seconds = [], {}, {}
    for key, atoms in entries:
        start = time.perf_counter()
        try:
            for frame_key, frame, label in label_entry(key, atoms, settings):
                frames.append((frame_key, key, frame, label))
        except Exception as exc:  # noqa: BLE001 -- any failure of one structure is recorded, the others go on
            failed[key] = f'{type(exc).__name__}: {exc}'.splitlines()[0][:500]
        seconds[key] = time.perf_counter() - start
        if log is not None:
            status = f'FAILED {failed[key]}' if key in failed else 'ok'
            log.write(f'{key}: {len(atoms)} atoms, {seconds[key]:.2f} s, {status}\n')
            log.flush()
    return {'frames': frames, 'failed': failed, 'seconds': seconds}


def write_labels(path, frames) -> None:
    """Write ``(key, source, atoms, label)`` frames to extxyz with the label under prefixed info/array keys."""
    import ase.io

    images = []
    for key, source, atoms, label in frames:
        image = Atoms(atoms.get_chemical_symbols(), positions=atoms.get_positions(), cell=atoms.get_cell(),
                      pbc=atoms.get_pbc())
        image.info[KEY] = key
        image.info[SOURCE] = source
        image.info[ENERGY] = float(label['energy'])
        image.info[VIRIAL] = np.asarray(label['virial'], dtype=float).reshape(9)
        image.arrays[FORCES] = np.asarray(label['forces'], dtype=float)
        images.append(image)
    ase.io.write(path, images, format='extxyz')


def read_labels(path) -> list[tuple[str, str, Atoms, dict]]:
    """Inverse of :func:`write_labels`."""
    import ase.io

    frames = []
    for image in ase.io.read(path, index=':', format='extxyz'):
        label = {
            'energy': float(image.info[ENERGY]),
            'forces': np.array(image.arrays[FORCES], dtype=float),
            'virial': np.array(image.info[VIRIAL], dtype=float).reshape(3, 3),
        }
        atoms = Atoms(image.get_chemical_symbols(), positions=image.get_positions(), cell=image.get_cell(),
                      pbc=image.get_pbc())
        frames.append((str(image.info[KEY]), str(image.info[SOURCE]), atoms, label))
    return frames


def main(argv=None) -> int:
    """``aiida-liqcryst-oracle``: label the structures of ``structures.extxyz`` in the working directory.

    Writes ``labels.extxyz`` (labeled frames), ``results.json`` (failures, timings, counts) and a log. A structure
    that fails is recorded in ``results.json`` and the others go on; the exit status is non-zero only when the
    input cannot be read or the settings are invalid.
    """
    import argparse
    import json
    import pathlib
    import sys
    import time

    import ase.io

    parser = argparse.ArgumentParser(prog='aiida-liqcryst-oracle', description=__doc__.splitlines()[0])
    parser.add_argument('--structures', default=STRUCTURES_FILE, help='extxyz with one frame per structure '
                        f'(info "{KEY}" names it; default: frame index)')
    parser.add_argument('--settings', default=SETTINGS_FILE, help='optional JSON settings (relax_steps, fmax, md)')
    parser.add_argument('--labels', default=LABELS_FILE, help='output extxyz of the labeled frames')
    parser.add_argument('--results', default=RESULTS_FILE, help='output JSON summary')
    parser.add_argument('--log', default=LOG_FILE, help='log file')
    args = parser.parse_args(argv)

    settings = {}
    if pathlib.Path(args.settings).exists():
        settings = json.loads(pathlib.Path(args.settings).read_text())
    error = validate_settings(settings)
    if error:
        print(f'invalid settings in {args.settings}: {error}', file=sys.stderr)
        return 2
    try:
        images = ase.io.read(args.structures, index=':', format='extxyz')
    except Exception as exc:  # noqa: BLE001
        print(f'cannot read {args.structures}: {exc}', file=sys.stderr)
        return 3
    entries = [(str(image.info.get(KEY, index)), image) for index, image in enumerate(images)]

    start = time.perf_counter()
    with open(args.log, 'w', encoding='utf-8') as log:
        log.write(f'oracle {MODEL}: {len(entries)} structures, settings {json.dumps(settings)}\n')
        get_calculator()
        load_seconds = time.perf_counter() - start
        log.write(f'model loaded in {load_seconds:.1f} s\n')
        result = label_entries(entries, settings, log)
        total = time.perf_counter() - start
        log.write(f'done: {len(result["frames"])} frames labeled, {len(result["failed"])} failed, {total:.1f} s\n')

    write_labels(args.labels, result['frames'])
    n_labeled = len(result['frames'])
    label_seconds = sum(result['seconds'].values())
    summary = {
        'model': MODEL,
        'settings': settings,
        'n_structures': len(entries),
        'n_labeled': n_labeled,
        'n_failed': len(result['failed']),
        'failed': result['failed'],
        'frames': {source: [key for key, src, _, _ in result['frames'] if src == source] for source, _ in entries},
        'seconds': total,
        'seconds_model_load': load_seconds,
        'seconds_per_structure': result['seconds'],
        'seconds_per_label': label_seconds / n_labeled if n_labeled else None,
    }
    pathlib.Path(args.results).write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
