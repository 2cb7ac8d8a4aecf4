"""Batched jobs against one job per structure: oracle labels and potential relaxations (EvoSearch's unit of work).

    verdi -p liqcryst run benchmarks/batching.py --potential <DeepPotentialData PK> [--n 16] [--json out.json]

Labels: ``n`` random 24-atom SiO2 melts labeled by the oracle through LabelWorkChain, once in one job
(batch_size n) and once in n jobs (batch_size 1). Relaxations: ``n`` random symmetric SiO2 crystals (pyxtal,
2-4 formula units, as EvoSearch's newcomers) relaxed with the potential at 0 GPa by AseCalculation, once in one
job and once in n jobs. Same inputs both ways; wall time of the whole work, rates per second / minute.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

from aiida import orm
from aiida.engine import run_get_node
from aiida.manage.caching import disable_caching
from aiida.plugins import CalculationFactory

from aiida_liqcryst.structures.random_packing import random_packing
from aiida_liqcryst.workflows.label import LabelWorkChain

AseCalculation = CalculationFactory('liqcryst.ase')
RELAX = {'task': 'relax', 'pressure': 0.0, 'cell': True, 'fmax': 0.05, 'steps': 150, 'optimizer': 'FIRE'}


def timed(function):
    start = time.time()
    node = function()
    return node, time.time() - start


def labels(code, n: int) -> dict:
    structures = {f'melt_{i}': orm.StructureData(ase=random_packing({'Si': 1, 'O': 2}, 8, 2.6, 1.5, seed=100 + i)) for i in range(n)}
    result = {}
    for name, batch in (('batched', n), ('one_per_job', 1)):
        builder = LabelWorkChain.get_builder_from_protocol(code, structures, 'oracle', ['O', 'Si'], overrides={'batch_size': batch})
        with disable_caching():  # `aiida-liqcryst setup` caches labels: the second variant would reuse the first's
            (_, node), seconds = timed(lambda: run_get_node(builder))
        assert node.is_finished_ok, node.exit_message
        result[name] = {'jobs': -(-n // batch), 'seconds': round(seconds, 1), 'labels_per_second': round(n / seconds, 3)}
    result['speedup'] = round(result['one_per_job']['seconds'] / result['batched']['seconds'], 2)
    return result


def random_crystals(n: int, seed: int = 0) -> dict:
    from aiida_liqcryst.evolution import operators

    import numpy as np

    rng = np.random.default_rng(seed)
    crystals = {}
    while len(crystals) < n:
        atoms, _ = operators.random_crystal({'Si': 1, 'O': 2}, int(rng.integers(2, 5)), rng)
        if atoms is not None:
            crystals[f'crystal_{len(crystals)}'] = orm.StructureData(ase=atoms)
    return crystals


def relaxations(code, potential, n: int) -> dict:
    structures = random_crystals(n)
    result = {}
    for name, groups in (('batched', [list(structures)]), ('one_per_job', [[k] for k in structures])):
        def run_all():
            # all jobs of a variant at once in this process, as a work chain's parallel submits would run them
            import asyncio

            from aiida.manage import get_manager

            runner = get_manager().create_runner(communicator=None)  # as aiida.engine.run does: no broker needed
            processes = []
            for group in groups:
                builder = AseCalculation.get_builder()
                builder.code, builder.potential = code, potential
                builder.structures = {k: structures[k] for k in group}
                builder.settings = orm.Dict(RELAX)
                processes.append(runner.instantiate_process(builder))

            async def all_done():
                await asyncio.gather(*(process.step_until_terminated() for process in processes))

            runner.loop.run_until_complete(all_done())
            return [process.node for process in processes]

        nodes, seconds = timed(run_all)
        assert all(node.is_finished for node in nodes), [node.exit_status for node in nodes]
        result[name] = {'jobs': len(groups), 'seconds': round(seconds, 1), 'relaxations_per_minute': round(60 * n / seconds, 2)}
    result['speedup'] = round(result['one_per_job']['seconds'] / result['batched']['seconds'], 2)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--potential', required=True)
    parser.add_argument('--n', type=int, default=16)
    parser.add_argument('--skip-labels', action='store_true', help='only the relaxations')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    result = {} if args.skip_labels else {'labels': labels(orm.load_code('oracle@localhost'), args.n)}
    result['relaxations'] = relaxations(orm.load_code('ase@localhost'), orm.load_node(args.potential), args.n)
    for what, rate in (('labels', 'labels_per_second'), ('relaxations', 'relaxations_per_minute')):
        if what not in result:
            continue
        r = result[what]
        print(f"{what}: {args.n} in one job {r['batched']['seconds']} s ({r['batched'][rate]} {rate.replace('_', ' ')}), "
              f"in {args.n} jobs {r['one_per_job']['seconds']} s ({r['one_per_job'][rate]}): batching {r['speedup']}x")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
