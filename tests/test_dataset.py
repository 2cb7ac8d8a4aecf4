"""LabeledDatasetData and its calcfunctions: round trip to deepmd's npy layout, merging, bad input, provenance."""

from __future__ import annotations

import numpy as np
import pytest
from aiida import orm

from aiida_liqcryst.deepmd.calcfunctions import build_dataset, merge_datasets, select_by_density
from aiida_liqcryst.deepmd.data.dataset import LabeledDatasetData, frame_density, frames_in_density_range

from .conftest import labeled_nodes

TYPE_MAP = ['O', 'Si']


def type_order(atoms):
    """The permutation the dataset applies: atoms sorted by type (stable)."""
    return np.argsort([TYPE_MAP.index(s) for s in atoms.get_chemical_symbols()], kind='stable')


def test_round_trip_through_dpdata(sio2_dataset, melt_frames, tmp_path, monkeypatch):
    """Structures -> build_dataset -> export (relative folder) -> dpdata gives back the same numbers."""
    import dpdata

    monkeypatch.chdir(tmp_path)
    paths = sio2_dataset.export('exported')
    assert all(p.startswith(str(tmp_path)) for p in paths)
    assert sio2_dataset.type_map == TYPE_MAP
    assert sio2_dataset.nframes == len(melt_frames)
    assert sum(s['nframes'] for s in sio2_dataset.systems) == len(melt_frames)

    loaded = [dpdata.LabeledSystem(p, fmt='deepmd/npy') for p in paths]
    # every original frame is found once, with identical numbers, in the system of its composition
    found = 0
    for atoms, label in melt_frames:
        order = type_order(atoms)
        symbols = np.array(atoms.get_chemical_symbols())[order]
        for system in loaded:
            if list(np.array(system['atom_names'])[system['atom_types']]) != list(symbols):
                continue
            match = np.flatnonzero(np.isclose(system['energies'], label['energy'], rtol=0, atol=1e-9))
            if len(match) != 1:
                continue
            i = match[0]
            np.testing.assert_allclose(system['coords'][i], atoms.get_positions()[order], rtol=0, atol=1e-12)
            np.testing.assert_allclose(system['cells'][i], atoms.get_cell().array, rtol=0, atol=1e-12)
            np.testing.assert_allclose(system['forces'][i], label['forces'][order], rtol=0, atol=1e-12)
            np.testing.assert_allclose(system['virials'][i], label['virial'], rtol=0, atol=1e-12)
            found += 1
    assert found == len(melt_frames)

    multi = sio2_dataset.to_dpdata()
    assert isinstance(multi, dpdata.MultiSystems)
    assert multi.get_nframes() == len(melt_frames)
    energies = np.sort(np.concatenate([s['energies'] for s in multi]))
    np.testing.assert_allclose(energies, np.sort([label['energy'] for _, label in melt_frames]), rtol=0, atol=1e-9)

    frames = sio2_dataset.get_frames()
    assert sorted(f['energy'] for f in frames) == pytest.approx(sorted(label['energy'] for _, label in melt_frames))
    arrays = sio2_dataset.get_arrays()
    assert set(arrays) == {s['name'] for s in sio2_dataset.systems}


def test_provenance(sio2_dataset, melt_frames):
    """The dataset's creator is build_dataset, with the type map and every structure/label pair as inputs."""
    creator = sio2_dataset.creator
    assert creator.process_label == 'build_dataset'
    labels = set(creator.base.links.get_incoming().all_link_labels())
    expected = {'type_map'} | {f'{kind}_{k}' for k in range(len(melt_frames)) for kind in ('structure', 'labels')}
    assert labels == expected


def test_merge(sio2_dataset, melt_frames):
    """merge_datasets concatenates frames, keeps provenance and refuses different type maps."""
    extra = build_dataset(type_map=orm.List(TYPE_MAP), **labeled_nodes(melt_frames[:2]))
    merged = merge_datasets(first=sio2_dataset, second=extra)
    assert merged.nframes == sio2_dataset.nframes + 2
    assert merged.type_map == TYPE_MAP
    energies = sorted(f['energy'] for f in merged.get_frames())
    expected = sorted([label['energy'] for _, label in melt_frames] + [label['energy'] for _, label in melt_frames[:2]])
    assert energies == pytest.approx(expected)
    inputs = {link.link_label: link.node.uuid for link in merged.creator.base.links.get_incoming().all()}
    assert inputs == {'first': sio2_dataset.uuid, 'second': extra.uuid}

    other = build_dataset(type_map=orm.List(['O', 'Si', 'Al']), **labeled_nodes(melt_frames[:1]))
    with pytest.raises(ValueError, match='type maps differ'):
        merge_datasets(first=sio2_dataset, second=other)


def test_bad_input(melt_frames):
    """An element outside the type map, no frames, or an unpaired key: clear errors."""
    nodes = labeled_nodes(melt_frames[:2])
    with pytest.raises(ValueError, match=r"\['Si'\].*not in the type_map"):
        build_dataset(type_map=orm.List(['O']), **nodes)
    with pytest.raises(ValueError, match='at least one labeled frame'):
        build_dataset(type_map=orm.List(TYPE_MAP))
    unpaired = {key: node for key, node in nodes.items() if key != 'labels_1'}
    with pytest.raises(ValueError, match='`structure_1` has no matching `labels_1`'):
        build_dataset(type_map=orm.List(TYPE_MAP), **unpaired)
    with pytest.raises(ValueError, match='at least one labeled frame'):
        LabeledDatasetData(type_map=TYPE_MAP, frames=[])


def test_select_by_density(sio2_dataset):
    # Si diamond: 8 atoms x 28.0855 amu in 5.43^3 Å^3 is 2.33 g/cm^3 (the textbook value)
    assert frame_density({'symbols': ['Si'] * 8, 'cell': np.eye(3) * 5.43}) == pytest.approx(2.329, abs=0.002)
    loose = sio2_dataset.get_frames()
    dense = [dict(frame, cell=frame['cell'] * 0.9, positions=frame['positions'] * 0.9) for frame in loose]
    assert frame_density(dense[0]) == pytest.approx(frame_density(loose[0]) / 0.9 ** 3)
    middle = (frame_density(loose[0]) + frame_density(dense[0])) / 2
    assert len(frames_in_density_range(loose + dense, 0.0, middle)) == len(loose)
    assert frames_in_density_range(loose + dense, middle, 100.0) == dense
    dataset = LabeledDatasetData(type_map=TYPE_MAP, frames=loose + dense)
    picked = select_by_density(dataset, orm.List([middle, 100.0]))
    assert picked.nframes == len(dense) and picked.creator.inputs.dataset.uuid == dataset.uuid
    assert sorted(f['energy'] for f in picked.get_frames()) == pytest.approx(sorted(f['energy'] for f in dense))
    with pytest.raises(ValueError, match='no frame of the dataset lies in'):
        select_by_density(dataset, orm.List([50.0, 100.0]))
