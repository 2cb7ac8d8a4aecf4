"""Reference engines as adapters: the registry, and an engine registered by this module (a copy of the oracle under
another name, installed as a distribution on sys.path) serving LabelWorkChain and ReferenceMeltWorkChain without
a change to their files."""

from __future__ import annotations

import importlib
import sys
import textwrap

import numpy as np
import pytest

from .conftest import COMPOSITION
from .test_label import TYPE_MAP, small_melt, structure_nodes

COPY = 'oracle-copy'


@pytest.fixture
def copy_engine(tmp_path):
    """Register ``oracle-copy`` (entry point of the group ``liqcryst.reference``) for the duration of one test."""
    from aiida_liqcryst.reference import ENTRY_POINT_GROUP, engine_names

    assert COPY not in engine_names()
    (tmp_path / 'liqcryst_copy_engine.py').write_text(textwrap.dedent(f'''
        from aiida_liqcryst.reference.oracle import OracleEngine

        class OracleCopyEngine(OracleEngine):
            """The oracle under another name: what a user's own engine module looks like."""
            name = {COPY!r}
    '''))
    info = tmp_path / 'liqcryst_copy_engine-0.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: liqcryst-copy-engine\nVersion: 0.1\n')
    (info / 'entry_points.txt').write_text(f'[{ENTRY_POINT_GROUP}]\n{COPY} = liqcryst_copy_engine:OracleCopyEngine\n')
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield COPY
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop('liqcryst_copy_engine', None)
        importlib.invalidate_caches()
        assert COPY not in engine_names()


def test_the_packaged_engines_are_registered(aiida_profile):
    from aiida_liqcryst.reference import engine_names, get_engine
    from aiida_liqcryst.reference.cp2k import Cp2kEngine
    from aiida_liqcryst.reference.oracle import OracleEngine
    from aiida_liqcryst.reference.vasp import VaspEngine

    assert engine_names() == ['cp2k', 'oracle', 'vasp']
    assert [type(get_engine(name)) for name in engine_names()] == [Cp2kEngine, OracleEngine, VaspEngine]
    assert [get_engine(name).calc_plugin for name in engine_names()] == ['cp2k', 'liqcryst.oracle', 'vasp.vasp']
    assert [name for name in engine_names() if get_engine(name).runs_md] == ['oracle']
    with pytest.raises(ValueError, match=r"unknown engine 'siesta'; choose one of \['cp2k', 'oracle', 'vasp'\]"):
        get_engine('siesta')


def test_a_registered_engine_serves_the_label_work_chain(codes, copy_engine):
    """The copy labels two melts exactly as the oracle does; its settings are checked by its own ``check``."""
    from aiida import orm
    from aiida.common.links import LinkType
    from aiida.engine import run_get_node

    from aiida_liqcryst.reference import engine_names
    from aiida_liqcryst.workflows.label import LabelWorkChain

    assert copy_engine in engine_names()
    structures = {f'melt_{i}': small_melt(40 + i) for i in range(2)}
    datasets = {}
    for engine in ('oracle', copy_engine):
        builder = LabelWorkChain.get_builder_from_protocol(codes['oracle'], structure_nodes(structures), engine, TYPE_MAP)
        results, node = run_get_node(builder)
        assert node.is_finished_ok, node.exit_message
        assert results['statistics']['engine'] == engine
        calls = node.base.links.get_outgoing(link_type=LinkType.CALL_CALC).all()
        assert sorted(link.link_label for link in calls) == ['build_dataset', 'oracle_batch_0']
        datasets[engine] = results['dataset']
    energies = {engine: sorted(frame['energy'] for frame in dataset.get_frames()) for engine, dataset in datasets.items()}
    assert len(energies[copy_engine]) == 2
    assert np.allclose(energies[copy_engine], energies['oracle'], rtol=0, atol=1e-6)

    # the engine's own check applies under its own name, before anything runs
    builder = LabelWorkChain.get_builder_from_protocol(codes['oracle'], structure_nodes(structures), copy_engine, TYPE_MAP)
    builder.settings = orm.Dict({copy_engine: {'relax': 3}})
    with pytest.raises(ValueError, match=r"`settings.oracle`: unknown oracle settings \['relax'\]"):
        run_get_node(builder)
    builder.settings = orm.Dict({copy_engine: {}})
    builder.code = codes['lmp']
    with pytest.raises(ValueError, match=rf"engine '{copy_engine}' needs a code for `liqcryst.oracle`"):
        run_get_node(builder)


def test_a_registered_engine_that_runs_md_makes_the_held_out_melt(codes, copy_engine):
    """ReferenceMeltWorkChain takes any engine whose ``runs_md`` is set: its MD setting is the engine's own section."""
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.reference_melt import MD_LINK, ReferenceMeltWorkChain

    md = {'steps': 8, 'temperature': 3000, 'timestep': 1.0, 'every': 4, 'skip': 4}
    overrides = {'densities': [2.6], 'temperatures': [3000], 'batch_size': 1,
                 'premelt': {'parameters': {'hot_steps': 100, 'steps': 100}},
                 'settings': {copy_engine: {'relax_steps': 0, 'md': md}}}
    builder = ReferenceMeltWorkChain.get_builder_from_protocol(codes['oracle'], COMPOSITION, engine=copy_engine,
                                                               protocol='demo', overrides=overrides,
                                                               lammps_code=codes['lmp'])
    assert builder.label.engine.value == copy_engine
    _, node = run_get_node(builder)
    assert node.is_finished_ok, node.exit_status
    assert node.outputs.dataset.nframes == 1  # (8 - 4) // 4 frames of one run
    label = node.base.links.get_outgoing(link_label_filter=MD_LINK.format(index=0)).one().node
    assert label.inputs.engine.value == copy_engine
    assert label.inputs.settings.get_dict()[copy_engine]['md']['temperature'] == 3000
