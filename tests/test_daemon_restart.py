"""Checkpoints: an ActiveLoop submitted to the daemon survives the daemon going down twice mid-loop (during
training, then during the second exploration) and finishes with every calculation run exactly once and no label
lost or doubled.

On both profiles ``aiida-liqcryst setup`` makes: the embedded one (SQLite + ZeroMQ broker; ``verdi daemon stop``
twice) and the production one (PostgreSQL + RabbitMQ; a clean stop, then ``kill -9`` of the daemon's whole
process group, as when a login node reboots).  The production case needs the two services on their standard
local ports (``.ci/run`` starts them when it can); it is skipped without them unless LIQCRYST_REQUIRE_SERVICES
is set, as ``.ci/run`` does.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

from .conftest import tiny_overrides

BIN = pathlib.Path(sys.executable).parent
PROFILES = {'embedded': 'liqcryst', 'production': 'liqcryst-production'}
SERVICES = {'PostgreSQL': 5432, 'RabbitMQ': 5672}

SUBMIT = """
import json, os, sys
from aiida import load_profile, orm
load_profile(os.environ['LIQCRYST_TEST_PROFILE'])
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
import json, os, sys
from aiida import load_profile, orm
load_profile(os.environ['LIQCRYST_TEST_PROFILE'])
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


def service_reachable(port: int) -> bool:
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope='module', params=['embedded', 'production'])
def profile(request, tmp_path_factory):
    """A fresh configuration folder with one of the two profiles ``aiida-liqcryst setup`` makes, and the codes."""
    kind = request.param
    if kind == 'production':
        missing = [name for name, port in SERVICES.items() if not service_reachable(port)]
        if missing:
            message = f'the production profile needs {", ".join(missing)} on 127.0.0.1 (.ci/run starts them)'
            if os.environ.get('LIQCRYST_REQUIRE_SERVICES'):
                pytest.fail(message)
            pytest.skip(message)
    aiida_path = tmp_path_factory.mktemp(f'daemon_config_{kind}')
    # the daemon starts its workers with the `verdi` found on PATH: the one of this environment
    env = {**os.environ, 'AIIDA_PATH': str(aiida_path), 'PATH': f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           'LIQCRYST_TEST_PROFILE': PROFILES[kind]}
    command = [str(BIN / 'aiida-liqcryst'), 'setup'] + (['--production'] if kind == 'production' else [])
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f'`{" ".join(command[1:])}` failed:\n{result.stdout}\n{result.stderr}')
    # the daemon's control calls time out after 2 s by default: too short on a loaded 2-core machine
    verdi(env, 'config', 'set', 'daemon.timeout', '60')
    yield kind, env
    subprocess.run([str(BIN / 'verdi'), '-p', PROFILES[kind], 'daemon', 'stop'], env=env, capture_output=True, timeout=120)
    if kind == 'production':  # drop the PostgreSQL database this run made
        subprocess.run([str(BIN / 'verdi'), 'profile', 'delete', '--force', '--delete-data', PROFILES[kind]], env=env,
                       capture_output=True, timeout=300)


def verdi(env, *args):
    result = subprocess.run([str(BIN / 'verdi'), '-p', env['LIQCRYST_TEST_PROFILE'], *args], env=env, capture_output=True, text=True, timeout=600)
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


PID_FILE = """
import os
from aiida import load_profile
from aiida.engine.daemon.client import get_daemon_client
load_profile(os.environ['LIQCRYST_TEST_PROFILE'])
print(get_daemon_client().circus_pid_file)
"""


def kill_daemon(env):
    """SIGKILL the daemon's circus arbiter and its worker processes at once: no clean shutdown, a stale PID file
    left. The calculations' own jobs (started by the scheduler, not children of the workers) keep running."""
    import psutil

    pid_file = subprocess.run([sys.executable, '-c', PID_FILE], env=env, check=True, capture_output=True, text=True,
                              timeout=300).stdout.split()[-1]
    arbiter = psutil.Process(int(pathlib.Path(pid_file).read_text().split()[0]))
    workers = arbiter.children()
    assert workers, 'the daemon has no worker to kill'
    for process in [arbiter, *workers]:
        process.send_signal(signal.SIGKILL)
    psutil.wait_procs([arbiter, *workers], timeout=30)
    assert pathlib.Path(pid_file).exists()  # stale: `verdi daemon start` has to clean it up


def count(state, label):
    return sum(1 for _, process_label, _ in state['calcs'] if process_label == label)


def test_loop_survives_daemon_restarts(profile):
    kind, env = profile
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
    if kind == 'production':
        kill_daemon(env)
    else:
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
