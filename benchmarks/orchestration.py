"""Orchestration overhead of a finished work chain: its wall time against the time its CalcJobs' jobs ran.

    verdi -p liqcryst run benchmarks/orchestration.py <workflow PK> [--json out.json]

Each job's run interval is read off its working directory on the (local) computer: it starts when the scheduler
opened ``_scheduler-stdout.txt`` (the file's birth time) and ends with the last file the job wrote. Jobs run in
parallel, so besides their sum this reports the union of the intervals (the time at least one job ran):
``wall / union`` is the overhead factor of AiiDA and the plugin (upload, scheduler polling, parsing, the work
chains' own steps), 1.0 meaning none. Needs the remote folders (not cleaned) on this machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pathlib
import subprocess

from aiida import orm

SKIP = {'_aiidasubmit.sh', '.aiida'}


def birth_time(path: pathlib.Path) -> float:
    """Creation time of ``path`` (``stat %W``), its modification time where the file system keeps none."""
    out = subprocess.run(['stat', '-c', '%W', str(path)], capture_output=True, text=True).stdout.strip()
    return float(out) if out and out != '0' else path.stat().st_mtime


def job_interval(calc: orm.CalcJobNode) -> tuple[float, float] | None:
    """(start, end) in epoch seconds of the job of ``calc``, or None without a readable local working directory."""
    if 'remote_folder' not in calc.outputs:
        return None
    folder = pathlib.Path(calc.outputs.remote_folder.get_remote_path())
    stdout = folder / '_scheduler-stdout.txt'
    if not stdout.exists():
        return None
    start = birth_time(stdout)
    end = start
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if d not in SKIP]
        for name in files:
            path = pathlib.Path(root) / name
            if name in SKIP or path.is_symlink():
                continue
            end = max(end, path.stat().st_mtime)
    return start, end


def union_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by at least one interval."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total


def overhead(workflow: orm.WorkflowNode) -> dict:
    """Wall time of ``workflow``, sum and union of its jobs' run intervals, per calculation type."""
    calcs = [n for n in workflow.called_descendants if isinstance(n, orm.CalcJobNode)]
    intervals, by_label, missing = [], collections.defaultdict(lambda: [0, 0.0]), 0
    for calc in calcs:
        interval = job_interval(calc)
        if interval is None:
            missing += 1
            continue
        intervals.append(interval)
        by_label[calc.process_label][0] += 1
        by_label[calc.process_label][1] += interval[1] - interval[0]
    wall = (workflow.mtime - workflow.ctime).total_seconds()
    busy = union_length(intervals)
    return {
        'workflow': workflow.pk, 'process_label': workflow.process_label, 'wall_s': round(wall, 1),
        'jobs': len(intervals), 'jobs_without_folder': missing,
        'sum_of_job_times_s': round(sum(e - s for s, e in intervals), 1), 'union_of_job_times_s': round(busy, 1),
        'wall_over_union': round(wall / busy, 3) if busy else None,
        'per_calculation': {label: {'jobs': n, 'seconds': round(t, 1)} for label, (n, t) in sorted(by_label.items())},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('workflow', help='PK or UUID of a finished work chain (e.g. the demo ActiveLoopWorkChain)')
    parser.add_argument('--json', default=None, help='also write the numbers to this file')
    args = parser.parse_args()
    result = overhead(orm.load_node(args.workflow))
    print(f"{result['process_label']}<{result['workflow']}>: wall {result['wall_s'] / 60:.1f} min; "
          f"{result['jobs']} jobs ran {result['sum_of_job_times_s'] / 60:.1f} min in all, at least one was running "
          f"for {result['union_of_job_times_s'] / 60:.1f} min; wall / union = {result['wall_over_union']}")
    print(f"{'calculation':28s} {'jobs':>5s} {'job time (min)':>15s}")
    for label, row in result['per_calculation'].items():
        print(f"{label:28s} {row['jobs']:5d} {row['seconds'] / 60:15.1f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
