"""Remote dispatch through a real SLURM: a single-node cluster from Debian's slurm-wlm + munge, started here.

The fixture writes a slurm.conf for this machine into a temporary folder (``SLURM_CONF`` points the clients at
it: nothing under /etc is changed), starts munged, slurmctld and slurmd, and registers an AiiDA computer with
the ``core.slurm`` scheduler. LabelWorkChain then labels structures with the oracle through ``sbatch``: the same
work chain and code as on ``core.direct``, only the computer differs. Needs root and the packages
(``.ci/install`` installs them); skipped without them unless LIQCRYST_REQUIRE_SERVICES is set.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest

SLURM_CONF = """\
ClusterName=liqcryst
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldPort=6917
SlurmdPort=6918
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""

NEEDED = ('munged', 'slurmctld', 'slurmd', 'sbatch', 'sinfo')


def _missing() -> str | None:
    if os.geteuid() != 0:
        return 'starting slurmctld/slurmd needs root'
    absent = [name for name in NEEDED if shutil.which(name) is None and not pathlib.Path(f'/usr/sbin/{name}').exists()]
    if absent:
        return f'SLURM not installed ({", ".join(absent)} missing): apt-get install slurm-wlm munge (.ci/install does)'
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f'/usr/sbin/{name}'


def _start_munge():
    socket_path = pathlib.Path('/run/munge/munge.socket.2')
    if socket_path.exists() and subprocess.run(['munge', '-n'], capture_output=True).returncode == 0:
        return
    pathlib.Path('/run/munge').mkdir(parents=True, exist_ok=True)
    shutil.chown('/run/munge', 'munge', 'munge')
    subprocess.run(['runuser', '-u', 'munge', '--', _binary('munged')], check=True, capture_output=True)
    for _ in range(30):
        if subprocess.run(['munge', '-n'], capture_output=True).returncode == 0:
            return
        time.sleep(1)
    pytest.fail('munged did not come up')


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    """A running single-node SLURM cluster; yields the environment its clients need (SLURM_CONF)."""
    reason = _missing()
    if reason:
        if os.environ.get('LIQCRYST_REQUIRE_SERVICES'):
            pytest.fail(reason)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp('slurm')
    (folder / 'state').mkdir()
    (folder / 'spool').mkdir()
    conf = folder / 'slurm.conf'
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split('.')[0], folder=folder, cpus=os.cpu_count()))
    _start_munge()
    previous = os.environ.get('SLURM_CONF')
    os.environ['SLURM_CONF'] = str(conf)  # sbatch/squeue run by AiiDA's local transport inherit it
    subprocess.run([_binary('slurmctld'), '-f', str(conf), '-c'], check=True, capture_output=True)
    subprocess.run([_binary('slurmd'), '-f', str(conf)], check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(['sinfo', '-h', '-o', '%T'], capture_output=True, text=True).stdout.strip()
        if state in ('idle', 'mixed', 'allocated'):
            break
        time.sleep(1)
    else:
        logs = '\n'.join((folder / f).read_text()[-2000:] for f in ('slurmctld.log', 'slurmd.log') if (folder / f).exists())
        pytest.fail(f'the SLURM node did not become idle (sinfo: {state!r})\n{logs}')
    yield folder
    subprocess.run(['scancel', '--user', 'root'], capture_output=True)
    for name in ('slurmd', 'slurmctld'):
        pid_file = folder / f'{name}.pid'
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().split()[0]), 15)
            except (ProcessLookupError, ValueError):
                pass
    if previous is None:
        os.environ.pop('SLURM_CONF', None)
    else:
        os.environ['SLURM_CONF'] = previous


@pytest.fixture(scope='module')
def slurm_oracle(slurm, aiida_profile, codes):
    """The ``oracle`` code on a ``core.slurm`` computer (localhost through the local transport)."""
    from aiida import orm

    computer = orm.Computer(label='slurm-local', hostname='localhost', transport_type='core.local',
                            scheduler_type='core.slurm', workdir=str(slurm / 'aiida_work')).store()
    computer.set_default_mpiprocs_per_machine(1)
    computer.configure()
    oracle = codes['oracle']
    code = orm.InstalledCode(computer=computer, filepath_executable=str(oracle.filepath_executable), label='oracle',
                             default_calc_job_plugin='liqcryst.oracle', prepend_text=oracle.prepend_text)
    return code.store()


def test_oracle_labels_through_sbatch(slurm_oracle, slurm):
    from aiida.engine import run_get_node

    from aiida_liqcryst.workflows.label import LabelWorkChain

    from .test_label import TYPE_MAP, called_calcjobs, small_melt, structure_nodes

    structures = structure_nodes({f'melt_{i}': small_melt(40 + i) for i in range(2)})
    builder = LabelWorkChain.get_builder_from_protocol(
        slurm_oracle, structures, 'oracle', TYPE_MAP,
        options={'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'max_wallclock_seconds': 600,
                 'queue_name': 'debug'},
    )
    results, node = run_get_node(builder)

    assert node.is_finished_ok, node.exit_message
    assert results['dataset'].nframes == 2
    [calc] = called_calcjobs(node, 'OracleCalculation')
    assert calc.computer.scheduler_type == 'core.slurm'
    assert calc.get_job_id().isdigit()  # a SLURM job id, given by sbatch
    script = (pathlib.Path(calc.outputs.remote_folder.get_remote_path()) / '_aiidasubmit.sh').read_text()
    assert '#SBATCH --partition=debug' in script and '#SBATCH --time=00:10:00' in script
    log = (slurm / 'slurmctld.log').read_text()
    assert f'JobId={calc.get_job_id()}' in log  # slurmctld scheduled it
