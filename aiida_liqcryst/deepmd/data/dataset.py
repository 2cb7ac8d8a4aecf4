"""``LabeledDatasetData``: labeled frames stored in deepmd-kit's npy layout in the node's repository.

Layout (one folder per system, the way ``dp train`` and ``dpdata`` read it)::

    sys_000/type.raw            atom types, one integer per atom (indices into type_map)
    sys_000/type_map.raw        the type map, one element per line
    sys_000/set.000/coord.npy   (nframes, natoms * 3) Å
    sys_000/set.000/box.npy     (nframes, 9) Å
    sys_000/set.000/energy.npy  (nframes,) eV
    sys_000/set.000/force.npy   (nframes, natoms * 3) eV/Å
    sys_000/set.000/virial.npy  (nframes, 9) eV

A system holds frames with the same atom types in the same order. Atoms of a frame are sorted by type
(stable: the order within one element is kept), so frames of one composition share a system whatever
order their atoms came in.
"""

from __future__ import annotations

import io
import pathlib
import tempfile

import numpy as np
from aiida import orm

AMU_PER_A3_IN_G_PER_CM3 = 1.66053906660


def frame_density(frame: dict) -> float:
    """Mass density (g/cm^3) of a frame (``symbols`` and ``cell``)."""
    from ase.data import atomic_masses, atomic_numbers

    mass = sum(atomic_masses[atomic_numbers[symbol]] for symbol in frame['symbols'])
    return float(mass * AMU_PER_A3_IN_G_PER_CM3 / abs(np.linalg.det(np.asarray(frame['cell']))))


def frames_in_density_range(frames: list[dict], low: float, high: float) -> list[dict]:
    """The frames whose density (g/cm^3) lies in [low, high]."""
    return [frame for frame in frames if low <= frame_density(frame) <= high]


ARRAY_FILES = {name: f'{name}.npy' for name in ('coord', 'box', 'energy', 'force', 'virial')}
SET_NAME = 'set.000'


def frames_to_systems(type_map: list[str], frames: list[dict]) -> list[dict]:
    """Group frames into deepmd systems: a list of dicts ``type`` (natoms,) and the arrays of ``ARRAY_FILES``.

    :raises ValueError: no frames, an element outside ``type_map``, or arrays of the wrong shape.
    """
    if not type_map or len(set(type_map)) != len(type_map):
        raise ValueError(f'type_map must be a non-empty list of distinct element symbols, got {type_map}')
    if not frames:
        raise ValueError('a dataset needs at least one labeled frame, got none')
    index = {element: i for i, element in enumerate(type_map)}
    groups: dict[tuple, dict] = {}
    for k, frame in enumerate(frames):
        missing = {'symbols', 'positions', 'cell', 'energy', 'forces', 'virial'} - set(frame)
        if missing:
            raise ValueError(f'frame {k} lacks {sorted(missing)}')
        unknown = sorted({s for s in frame['symbols'] if s not in index})
        if unknown:
            raise ValueError(
                f'frame {k} contains element(s) {unknown} that are not in the type_map {type_map}: '
                'add them to the type_map'
            )
        types = np.array([index[s] for s in frame['symbols']], dtype=int)
        natoms = len(types)
        positions = np.asarray(frame['positions'], dtype=float).reshape(natoms, 3)
        forces = np.asarray(frame['forces'], dtype=float)
        if forces.shape != (natoms, 3):
            raise ValueError(f'frame {k}: forces must have shape ({natoms}, 3), got {forces.shape}')
        cell = np.asarray(frame['cell'], dtype=float).reshape(3, 3)
        virial = np.asarray(frame['virial'], dtype=float).reshape(3, 3)
        energy = float(np.asarray(frame['energy'], dtype=float).reshape(-1)[0])
        order = np.argsort(types, kind='stable')
        key = tuple(types[order])
        group = groups.setdefault(key, {'type': types[order], **{name: [] for name in ARRAY_FILES}})
        group['coord'].append(positions[order].reshape(-1))
        group['box'].append(cell.reshape(-1))
        group['energy'].append(energy)
        group['force'].append(forces[order].reshape(-1))
        group['virial'].append(virial.reshape(-1))
    return [{name: np.asarray(value) for name, value in group.items()} for group in groups.values()]


class LabeledDatasetData(orm.Data):
    """Labeled frames (energy, forces, virial) in deepmd-kit's npy layout, ready for ``dp train`` / ``dp test``.

    Attributes: ``type_map``, ``nframes``, ``systems`` (list of ``{name, natoms, nframes}``).
    """

    def __init__(self, type_map: list[str] | None = None, frames: list[dict] | None = None, **kwargs):
        """Build from a type map and frames (dicts ``symbols``, ``positions``, ``cell``, ``energy``, ``forces``,
        ``virial``)."""
        super().__init__(**kwargs)
        if type_map is not None or frames is not None:
            self._set_frames(list(type_map or []), list(frames or []))

    def _set_frames(self, type_map: list[str], frames: list[dict]) -> None:
        """Write ``frames`` into the (fresh) repository (see :func:`frames_to_systems` for the checks)."""
        systems = frames_to_systems(type_map, frames)
        repository = self.base.repository
        summary = []
        for i, system in enumerate(systems):
            name = f'sys_{i:03d}'
            repository.put_object_from_bytes(
                ('\n'.join(str(t) for t in system['type']) + '\n').encode(), f'{name}/type.raw'
            )
            repository.put_object_from_bytes(('\n'.join(type_map) + '\n').encode(), f'{name}/type_map.raw')
            for array_name, filename in ARRAY_FILES.items():
                buffer = io.BytesIO()
                np.save(buffer, system[array_name])
                repository.put_object_from_bytes(buffer.getvalue(), f'{name}/{SET_NAME}/{filename}')
            summary.append({'name': name, 'natoms': int(len(system['type'])), 'nframes': int(len(system['energy']))})
        self.base.attributes.set('type_map', list(type_map))
        self.base.attributes.set('nframes', sum(s['nframes'] for s in summary))
        self.base.attributes.set('systems', summary)

    @property
    def type_map(self) -> list[str]:
        return self.base.attributes.get('type_map')

    @property
    def nframes(self) -> int:
        return self.base.attributes.get('nframes')

    @property
    def systems(self) -> list[dict]:
        return self.base.attributes.get('systems')

    def get_arrays(self, name: str | None = None) -> dict:
        """Arrays of one system (``type`` and those of ``ARRAY_FILES``); of every system by name if ``name`` is None."""
        if name is None:
            return {s['name']: self.get_arrays(s['name']) for s in self.systems}
        repository = self.base.repository
        text = repository.get_object_content(f'{name}/type.raw', mode='r')
        arrays = {'type': np.array(text.split(), dtype=int)}
        for array_name, filename in ARRAY_FILES.items():
            with repository.open(f'{name}/{SET_NAME}/{filename}', mode='rb') as handle:
                arrays[array_name] = np.load(io.BytesIO(handle.read()))
        return arrays

    def get_frames(self) -> list[dict]:
        """The frames as dicts (``symbols``, ``positions``, ``cell``, ``energy``, ``forces``, ``virial``)."""
        frames = []
        type_map = self.type_map
        for arrays in self.get_arrays().values():
            symbols = [type_map[t] for t in arrays['type']]
            natoms = len(symbols)
            for i in range(len(arrays['energy'])):
                frames.append(
                    {
                        'symbols': list(symbols),
                        'positions': arrays['coord'][i].reshape(natoms, 3),
                        'cell': arrays['box'][i].reshape(3, 3),
                        'energy': float(arrays['energy'][i]),
                        'forces': arrays['force'][i].reshape(natoms, 3),
                        'virial': arrays['virial'][i].reshape(3, 3),
                    }
                )
        return frames

    def export(self, folder) -> list[str]:
        """Write the system folders under ``folder`` (created; relative paths allowed); return their absolute paths."""
        folder = pathlib.Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        self.base.repository.copy_tree(folder)
        return [str(folder / s['name']) for s in self.systems]

    def to_dpdata(self):
        """The dataset as a ``dpdata.MultiSystems`` of ``LabeledSystem`` (type map kept)."""
        import dpdata

        with tempfile.TemporaryDirectory() as tmp:
            paths = self.export(tmp)
            systems = [dpdata.LabeledSystem(path, fmt='deepmd/npy', type_map=self.type_map) for path in paths]
        return dpdata.MultiSystems(*systems, type_map=list(self.type_map))
