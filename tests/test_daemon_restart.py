"""Checkpoints: an ActiveLoop submitted to the daemon of a fresh embedded profile survives the daemon being
stopped twice mid-loop (during training, then during the second exploration) and finishes with every
calculation run exactly once and no label lost or doubled."""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from .test_active_loop import tiny_overrides

BIN = pathlib.Path(sys.executable).parent
PROFILE = 'liqcryst'

SUBMIT = """
import json, sys
from aiida import load_profile, orm
load_profile('liqcryst')
from aiida.engine import submit
from aiida_liqcryst.workflows.active_loop import ActiveLoopWorkChain
codes = {label: orm.load_code(f'{label}@localhost') for label in ('dp', 'lmp', 'oracle')}
codes['engine'] = codes['oracle']
overrides = json.loads(sys.argv[1])
builder = ActiveLoopWorkChain.get_builder_from_protocol(codes, {'Si': 1, 'O': 2}, engine='oracle', protocol='demo',
                                                        overrides=overrides)
print(submit(builder).pk)
"""

STATUS = """
import json, sys
from aiida import load_profile, orm
load_profile('liqcryst')
loop = orm.load_node(int(sys.argv[1]))
calcs = sorted([n.pk, n.process_label, n.exit_status] for n in loop.called_descendants if isinstance(n, orm.CalcJobNode))
out = {'terminated': loop.is_terminated, 'finished_ok': loop.is_finished_ok, 'exit_status': loop.exit_status,
       'calcs': calcs}
if loop.is_finished_ok:
    initial = loop.base.links.get_outgoing(link_label_filter='initial_labels').one().node.outputs.dataset.nframes
    out.update(rows=loop.outputs.iterations.get_list(), initial=initial, final=loop.outputs.dataset.nframes,
               stop_reason=loop.outputs.stop_reason.value)
print(json.dumps(out))
"""


@pytest.fixture(scope='module')
def profile(tmp_path_factory):
    """A fresh configuration folder with the embedded profile (SQLite + ZeroMQ broker) and the codes."""
    aiida_path = tmp_path_factory.mktemp('daemon_config')
    # the daemon starts its workers with the `verdi` found on PATH: the one of this environment
    env = {**os.environ, 'AIIDA_PATH': str(aiida_path), 'PATH': f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run([str(BIN / 'aiida-liqcryst'), 'setup'], env=env, check=True, capture_output=True, timeout=300)
    # the daemon's control calls time out after 2 s by default: too short on a loaded 2-core machine
    subprocess.run([str(BIN / 'verdi'), '-p', PROFILE, 'config', 'set', 'daemon.timeout', '60'], env=env, check=True,
                   capture_output=True, timeout=120)
    yield env
    subprocess.run([str(BIN / 'verdi'), '-p', PROFILE, 'daemon', 'stop'], env=env, capture_output=True, timeout=120)


def verdi(env, *args):
    result = subprocess.run([str(BIN / 'verdi'), '-p', PROFILE, *args], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def status(env, pk):
    result = subprocess.run([sys.executable, '-c', STATUS, str(pk)], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_for(env, pk, condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = status(env, pk)
        if condition(state):
            return state
        time.sleep(5)
    pytest.fail(f'timed out waiting; last state {state}')


def count(state, label):
    return sum(1 for _, process_label, _ in state['calcs'] if process_label == label)


def test_loop_survives_daemon_restarts(profile):
    env = profile
    overrides = tiny_overrides()
    verdi(env, 'daemon', 'start', '1')
    pk = int(subprocess.run([sys.executable, '-c', SUBMIT, json.dumps(overrides)], env=env, check=True, capture_output=True,
                            text=True, timeout=300).stdout.split()[-1])

    # 1. stop while the first ensemble trains (the initial labels are done, the dp jobs are running or queued)
    state = wait_for(env, pk, lambda s: count(s, 'DeepmdTrainCalculation') >= 1 or s['terminated'], 600)
    verdi(env, 'daemon', 'stop')
    assert not state['terminated'], state
    stopped = status(env, pk)
    time.sleep(5)
    assert status(env, pk)['calcs'] == stopped['calcs']  # nothing moves while the daemon is down
    verdi(env, 'daemon', 'start', '1')

    # 2. stop again during the second iteration's exploration
    structures, conditions = overrides['number_of_structures'], len(overrides['schedule']['HP'][0]['pressures'])
    first_exploration = structures * conditions
    state = wait_for(env, pk, lambda s: count(s, 'ExploreMDCalculation') > first_exploration or s['terminated'], 900)
    verdi(env, 'daemon', 'stop')
    assert not state['terminated'], state
    verdi(env, 'daemon', 'start', '1')

    final = wait_for(env, pk, lambda s: s['terminated'], 900)
    assert final['finished_ok'], final
    assert 'max_iterations (2) reached' in final['stop_reason']
    # every calculation ran once and succeeded: no step was redone after a restart
    assert all(exit_status == 0 for _, _, exit_status in final['calcs']), final['calcs']
    models = overrides['train']['overrides']['number_of_models']
    assert count(final, 'DeepmdTrainCalculation') == 2 * models
    assert count(final, 'ExploreMDCalculation') == 2 * first_exploration
    # no label lost or doubled: the final dataset is the initial one plus exactly the labels of each iteration
    rows = final['rows']
    assert final['final'] == final['initial'] + sum(row['labels_added'] for row in rows)
    assert all(row['labels_added'] > 0 for row in rows)
