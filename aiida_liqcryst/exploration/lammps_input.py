"""LAMMPS input for exploration MD with a DeePMD ensemble: the MD condition and the script (plain functions)."""

from __future__ import annotations

import dataclasses
import math

from ase.data import atomic_masses, atomic_numbers

ENSEMBLES = ('npt', 'nvt')
BAR_PER_GPA = 1.0e4  # LAMMPS metal units: pressure in bar
MAX_SEED = 2**31 - 2  # LAMMPS seeds are positive 32-bit integers: LAMMPS gets seed + 1

DATA_FILENAME = 'structure.data'
SCRIPT_FILENAME = 'input.lammps'
LOG_FILENAME = 'log.lammps'
DEVI_FILENAME = 'model_devi.out'
DUMP_FILENAME = 'traj.dump'


@dataclasses.dataclass(frozen=True)
class Condition:
    """One exploration MD run: thermodynamic state, length and sampling.

    :param temperature: K (thermostat target and initial velocities).
    :param pressure: GPa (barostat target, isotropic; unused for ``nvt``).
    :param ensemble: ``'npt'`` (Nose-Hoover, isotropic cell) or ``'nvt'``.
    :param steps: number of MD steps.
    :param timestep: ps (metal units).
    :param dump_every: steps between stored frames; the model deviation is written at the same steps.
    :param thermo_every: steps between thermo lines.
    :param seed: velocity seed, 0 .. 2**31-2 (LAMMPS, which needs a positive seed, is given ``seed + 1``).
    :param tau_t: thermostat damping time, ps.
    :param tau_p: barostat damping time, ps.
    """

    temperature: float
    pressure: float = 0.0
    ensemble: str = 'npt'
    steps: int = 1000
    timestep: float = 0.001
    dump_every: int = 10
    thermo_every: int = 10
    seed: int = 1
    tau_t: float = 0.1
    tau_p: float = 0.5

    FLOATS = ('temperature', 'pressure', 'timestep', 'tau_t', 'tau_p')
    INTS = ('steps', 'dump_every', 'thermo_every', 'seed')

    @classmethod
    def fields(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, value: dict) -> Condition:
        """A Condition from a dict (e.g. a Dict node's content: whole-number floats come back as ints).

        :raises ValueError: with the message of :func:`condition_error` when the dict is invalid.
        """
        error = condition_error(value)
        if error:
            raise ValueError(error)
        kwargs = {}
        for key, item in value.items():
            if key in cls.FLOATS:
                kwargs[key] = float(item)
            elif key in cls.INTS:
                kwargs[key] = int(item)
            else:
                kwargs[key] = str(item).lower()
        return cls(**kwargs)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_timestep(self, factor: float) -> Condition:
        """The same simulated time and sampling times with the timestep scaled by ``factor`` (e.g. 0.5).

        Steps and the dump/thermo intervals are scaled by ``1/factor`` so the run covers the same time and
        stores frames at the same times.
        """
        scale = 1.0 / factor
        return dataclasses.replace(
            self,
            timestep=self.timestep * factor,
            steps=max(1, round(self.steps * scale)),
            dump_every=max(1, round(self.dump_every * scale)),
            thermo_every=max(1, round(self.thermo_every * scale)),
        )

    @property
    def simulated_time(self) -> float:
        """Simulated time in ps."""
        return self.steps * self.timestep


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    return _is_number(value) and math.isfinite(value) and float(value).is_integer()


def condition_error(value) -> str | None:
    """Why one condition dict is invalid (a message that names the key and the fix), or None."""
    if not isinstance(value, dict):
        return f'a condition must be a dict, got {value!r}'
    fields = Condition.fields()
    unknown = sorted(set(value) - set(fields))
    if unknown:
        return f'unknown keys {unknown}; allowed: {fields}'
    if 'temperature' not in value:
        return 'the key `temperature` (K) is required'
    for key in Condition.FLOATS:
        if key in value and not (_is_number(value[key]) and math.isfinite(value[key])):
            return f'`{key}` must be a finite number, got {value[key]!r}'
    for key in Condition.INTS:
        if key in value and not _is_integer(value[key]):
            return f'`{key}` must be an integer, got {value[key]!r}'
    if value['temperature'] <= 0:
        return f'`temperature` must be > 0 K, got {value["temperature"]}'
    ensemble = value.get('ensemble', Condition.ensemble)
    if not isinstance(ensemble, str) or ensemble.lower() not in ENSEMBLES:
        return f'`ensemble` must be one of {ENSEMBLES}, got {ensemble!r}'
    for key in ('steps', 'dump_every', 'thermo_every', 'timestep', 'tau_t', 'tau_p'):
        if key in value and value[key] <= 0:
            return f'`{key}` must be > 0, got {value[key]}'
    steps = value.get('steps', Condition.steps)
    if value.get('dump_every', Condition.dump_every) > steps:
        return f'`dump_every` ({value.get("dump_every", Condition.dump_every)}) must not exceed `steps` ({steps})'
    seed = value.get('seed', Condition.seed)
    if not 0 <= seed <= MAX_SEED:
        return f'`seed` must be in [0, {MAX_SEED}], got {seed}'
    return None


def conditions_error(conditions) -> str | None:
    """Why a list of condition dicts is invalid, or None."""
    if not isinstance(conditions, (list, tuple)) or not conditions:
        return 'give a non-empty list of condition dicts, e.g. [{"temperature": 3000, "pressure": 0, "ensemble": "npt"}]'
    for index, value in enumerate(conditions):
        error = condition_error(value)
        if error:
            return f'condition {index}: {error}'
    return None


def exploration_script(
    condition: Condition,
    type_map: list[str],
    elements: list[str],
    model_files: list[str],
    data_file: str = DATA_FILENAME,
    dump_file: str = DUMP_FILENAME,
    devi_file: str = DEVI_FILENAME,
) -> str:
    """The LAMMPS script of one exploration MD with the ensemble ``model_files``.

    :param type_map: the models' type map (element names known to them).
    :param elements: element of each LAMMPS atom type of the data file, in type order (the ``specorder``
        the data file was written with).
    :param model_files: the frozen models; the first drives the dynamics, all give the model deviation.
    :raises ValueError: an element unknown to the models, or no models.
    """
    if not model_files:
        raise ValueError('at least one model file is needed')
    unknown = [el for el in elements if el not in type_map]
    if unknown:
        raise ValueError(f'elements {unknown} are not in the models\' type_map {type_map}')
    c = condition
    lines = [
        '# exploration MD with a DeePMD ensemble (aiida-liqcryst)',
        'units           metal',
        'boundary        p p p',
        'atom_style      atomic',
        f'read_data       {data_file}',
    ]
    lines += [f'mass            {i} {atomic_masses[atomic_numbers[el]]:.4f}' for i, el in enumerate(elements, start=1)]
    lines += [
        'neighbor        1.0 bin',
        'neigh_modify    every 1 delay 0 check yes',
        f'pair_style      deepmd {" ".join(model_files)} out_freq {c.dump_every} out_file {devi_file}',
        f'pair_coeff      * * {" ".join(elements)}',
        f'timestep        {c.timestep:.10g}',
        f'velocity        all create {c.temperature:.10g} {c.seed + 1} dist gaussian mom yes rot yes',
    ]
    if c.ensemble == 'npt':
        bar = c.pressure * BAR_PER_GPA
        lines.append(
            f'fix             md all npt temp {c.temperature:.10g} {c.temperature:.10g} {c.tau_t:.10g} '
            f'iso {bar:.10g} {bar:.10g} {c.tau_p:.10g} tchain 3 pchain 3'
        )
    else:
        lines.append(f'fix             md all nvt temp {c.temperature:.10g} {c.temperature:.10g} {c.tau_t:.10g} tchain 3')
    lines += [
        'thermo_style    custom step temp press vol density pe ke etotal',
        'thermo_modify   format float %.10g',
        f'thermo          {c.thermo_every}',
        f'dump            traj all custom {c.dump_every} {dump_file} id type x y z',
        'dump_modify     traj sort id',
        f'run             {c.steps}',
        '',
    ]
    return '\n'.join(lines)


def write_data_file(atoms, path, elements: list[str]) -> None:
    """Write ``atoms`` as a LAMMPS data file whose atom types follow ``elements`` (1-based type = index + 1).

    ASE turns a general cell into LAMMPS' restricted triclinic form (a rotation), so dumped positions are
    in that rotated frame.
    """
    import ase.io

    ase.io.write(path, atoms, format='lammps-data', specorder=list(elements), atom_style='atomic', units='metal')
