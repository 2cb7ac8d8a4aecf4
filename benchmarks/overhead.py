"""Per-process overhead of the plugin's CalcJobs on a profile: wall time of each process against its job's run time.

    verdi -p <profile> run benchmarks/overhead.py [--n 5] [--mode submit|run] [--json out.json]

Runs ``n`` OracleCalculations one after the other, each labeling one 24-atom melt (a short job: Python, torch and
SevenNet-0 start, one label), with caching off. ``--mode submit`` hands each to the daemon (start it first:
``verdi -p <profile> daemon start 1``) and polls the node, the path of production work; ``--mode run`` runs it in
this interpreter. Per process: wall = node creation to its last update (finished, outputs parsed); job = the
interval the job ran, read off its working directory (see orchestration.py); overhead = wall - job: upload,
scheduler submission and polling, retrieval, parsing, and for ``submit`` the broker and the daemon. Run it on the
embedded profile and on the production one (PostgreSQL + RabbitMQ) to compare them.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

from aiida import orm
from aiida.engine import run_get_node, submit
from aiida.manage import get_manager
from aiida.manage.caching import disable_caching
from aiida.plugins import CalculationFactory

from aiida_liqcryst.structures.random_packing import random_packing

sys.path.insert(0, str(pathlib.Path(sys.argv[0]).resolve().parent))  # `verdi run` names this file in argv[0]
from orchestration import job_interval  # noqa: E402

OracleCalculation = CalculationFactory('liqcryst.oracle')


def one(code, seed: int, mode: str) -> dict:
    builder = OracleCalculation.get_builder()
    builder.code = code
    builder.structures = {'melt': orm.StructureData(ase=random_packing({'Si': 1, 'O': 2}, 8, 2.6, 1.5, seed=1000 + seed))}
    with disable_caching():
        if mode == 'run':
            _, node = run_get_node(builder)
        else:
            node = submit(builder)
            while not node.is_terminated:
                time.sleep(0.5)
    assert node.is_finished_ok, f'<{node.pk}> {node.exit_message}'
    interval = job_interval(node)
    if interval is None:
        raise SystemExit(f'<{node.pk}>: no local working directory to time the job')
    wall = (node.mtime - node.ctime).total_seconds()
    job = interval[1] - interval[0]
    return {'pk': node.pk, 'wall': round(wall, 2), 'job': round(job, 2), 'overhead': round(wall - job, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--n', type=int, default=5)
    parser.add_argument('--mode', choices=('submit', 'run'), default='submit')
    parser.add_argument('--code', default='oracle@localhost')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    profile = get_manager().get_profile()
    if args.mode == 'submit':
        from aiida.engine.daemon.client import get_daemon_client

        if not get_daemon_client().is_daemon_running:
            raise SystemExit(f'the daemon of profile {profile.name} is not running: verdi -p {profile.name} daemon start 1')
    code = orm.load_code(args.code)
    rows = [one(code, i, args.mode) for i in range(args.n)]
    overheads = [r['overhead'] for r in rows]
    result = {
        'profile': profile.name, 'storage': profile.storage_backend, 'broker': profile.process_control_backend,
        'mode': args.mode, 'processes': rows, 'overhead_median': round(statistics.median(overheads), 2),
        'overhead_min': min(overheads), 'overhead_max': max(overheads),
        'job_median': round(statistics.median(r['job'] for r in rows), 2),
    }
    print(f"profile {result['profile']} ({result['storage']}, broker {result['broker']}), {args.mode}: {args.n} "
          f"OracleCalculations, job {result['job_median']} s (median), overhead per process {result['overhead_median']} s "
          f"(median; {result['overhead_min']}-{result['overhead_max']})")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
