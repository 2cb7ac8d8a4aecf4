"""Exploration throughput: an ExploreMD LAMMPS run through AiiDA against the same input run bare.

    verdi -p liqcryst run benchmarks/explore.py <ExploreMDCalculation PK> [--steps 2000] [--json out.json]

Takes a finished ExploreMDCalculation (e.g. one of the demo loop's last iteration), runs it again through AiiDA
with ``steps`` MD steps (``get_builder_restart``: same models, structure, condition) and times the whole
CalcJob from launch to parsed outputs; then runs the very input files it wrote with the code's executable and
environment (prepend text) in a temporary folder, timed by the shell. katom-steps/s = atoms × steps / seconds.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time

from aiida import orm
from aiida.engine import run_get_node

sys.path.insert(0, str(pathlib.Path(sys.argv[0]).resolve().parent))  # `verdi run` names this file in argv[0]
from shared import run_with_code  # noqa: E402


def bare_run(calc: orm.CalcJobNode) -> float:
    """Seconds of ``lmp -in input.lammps`` on a copy of ``calc``'s working directory, with the code's environment."""
    source = pathlib.Path(calc.outputs.remote_folder.get_remote_path())
    code = calc.inputs.code
    inputs = [p for p in source.iterdir() if p.suffix in ('.pth', '.pb', '.lammps', '.data')]
    with tempfile.TemporaryDirectory() as tmp:
        for path in inputs:
            shutil.copy(path, tmp)
        return run_with_code(code, '-in input.lammps', tmp, log='lammps.out')


def throughput(calc: orm.CalcJobNode, steps: int) -> dict:
    builder = calc.get_builder_restart()
    parameters = builder.parameters.get_dict()
    parameters['steps'] = steps
    builder.parameters = orm.Dict(parameters)
    start = time.time()
    _, node = run_get_node(builder)
    aiida_seconds = time.time() - start
    assert node.is_finished_ok, node.exit_message
    bare_seconds = bare_run(node)
    natoms = len(node.inputs.structure.sites)
    rate = lambda seconds: natoms * steps / seconds / 1000  # noqa: E731
    return {
        'calculation': node.pk, 'atoms': natoms, 'steps': steps, 'models': len(node.inputs.potentials),
        'aiida_seconds': round(aiida_seconds, 1), 'bare_seconds': round(bare_seconds, 1),
        'aiida_katom_steps_per_s': round(rate(aiida_seconds), 2), 'bare_katom_steps_per_s': round(rate(bare_seconds), 2),
        'aiida_over_bare': round(bare_seconds / aiida_seconds, 3),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('calculation', help='PK or UUID of a finished ExploreMDCalculation')
    parser.add_argument('--steps', type=int, default=2000)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    r = throughput(orm.load_node(args.calculation), args.steps)
    print(f"{r['atoms']} atoms, {r['steps']} steps, {r['models']} models: through AiiDA {r['aiida_seconds']} s "
          f"({r['aiida_katom_steps_per_s']} katom-steps/s), bare {r['bare_seconds']} s ({r['bare_katom_steps_per_s']}); "
          f"AiiDA / bare throughput {r['aiida_over_bare']}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(r, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
