"""Calculation functions that make and combine ``LabeledDatasetData`` with their provenance."""

from __future__ import annotations

import re

from aiida import orm
from aiida.engine import calcfunction

from .data.dataset import LabeledDatasetData, frames_in_density_range

PAIR_KEY = re.compile(r'^(structure|labels)_(\w+)$')


def _sort_key(suffix: str):
    """Numeric suffixes in numeric order (2 before 10), others after them alphabetically."""
    return (0, int(suffix), '') if suffix.isdigit() else (1, 0, suffix)


def pair_frames(nodes: dict) -> list[dict]:
    """Frames (DEVELOPERS.md dicts) from ``structure_<k>`` StructureData / ``labels_<k>`` ArrayData pairs.

    :raises ValueError: a key that is not ``structure_<k>``/``labels_<k>``, an unpaired key, or labels without
        the arrays ``energy``, ``forces``, ``virial``.
    """
    pairs: dict[str, dict] = {}
    for key, node in nodes.items():
        match = PAIR_KEY.match(key)
        if not match:
            raise ValueError(f'unexpected input `{key}`: pass `structure_<k>` and `labels_<k>` pairs')
        pairs.setdefault(match.group(2), {})[match.group(1)] = node
    frames = []
    for suffix in sorted(pairs, key=_sort_key):
        pair = pairs[suffix]
        for kind, other in (('structure', 'labels'), ('labels', 'structure')):
            if kind not in pair:
                raise ValueError(f'`{other}_{suffix}` has no matching `{kind}_{suffix}`: inputs must come in pairs')
        structure, labels = pair['structure'], pair['labels']
        missing = {'energy', 'forces', 'virial'} - set(labels.get_arraynames())
        if missing:
            raise ValueError(f'`labels_{suffix}` lacks the arrays {sorted(missing)}')
        atoms = structure.get_ase()
        frames.append(
            {
                'symbols': atoms.get_chemical_symbols(),
                'positions': atoms.get_positions(),
                'cell': atoms.get_cell().array,
                'energy': labels.get_array('energy'),
                'forces': labels.get_array('forces'),
                'virial': labels.get_array('virial'),
            }
        )
    return frames


@calcfunction
def build_dataset(type_map: orm.List, **kwargs) -> LabeledDatasetData:
    """One ``LabeledDatasetData`` from ``structure_<k>`` (StructureData) and ``labels_<k>`` (ArrayData) pairs.

    Labels carry the arrays ``energy`` (1,) eV, ``forces`` (N, 3) eV/Å and ``virial`` (3, 3) eV.
    """
    return LabeledDatasetData(type_map=type_map.get_list(), frames=pair_frames(kwargs))


@calcfunction
def merge_datasets(**datasets) -> LabeledDatasetData:
    """One ``LabeledDatasetData`` holding the frames of all ``datasets`` (their type maps must be equal)."""
    if not datasets:
        raise ValueError('merge_datasets needs at least one dataset')
    type_maps = {key: list(node.type_map) for key, node in datasets.items()}
    first_key, first = next(iter(type_maps.items()))
    for key, type_map in type_maps.items():
        if type_map != first:
            raise ValueError(f'type maps differ: `{first_key}` has {first}, `{key}` has {type_map}')
    frames = [frame for key in sorted(datasets) for frame in datasets[key].get_frames()]
    return LabeledDatasetData(type_map=first, frames=frames)


@calcfunction
def select_by_density(dataset: LabeledDatasetData, bounds: orm.List) -> LabeledDatasetData:
    """The frames of ``dataset`` whose density lies in ``bounds`` ([low, high] g/cm^3).

    :raises ValueError: no frame lies in ``bounds`` (a dataset holds at least one frame).
    """
    low, high = bounds.get_list()
    frames = frames_in_density_range(dataset.get_frames(), low, high)
    if not frames:
        raise ValueError(f'no frame of the dataset lies in [{low}, {high}] g/cm^3')
    return LabeledDatasetData(type_map=list(dataset.type_map), frames=frames)
