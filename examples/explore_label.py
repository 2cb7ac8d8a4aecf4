"""One active-learning half-step with `verdi run`: explore the melt with an ensemble, label the candidates.

    verdi -p liqcryst run examples/explore_label.py --loop <PK of an ActiveLoopWorkChain>
        [--engine oracle|cp2k] [--temperatures 3000] [--pressures 0 20] [--steps 600] [--eps 1.5 3.0]
        [--max-candidates 8] [--formula-units 8] [--structures 2]

The ensemble is the final `potentials` of the loop (or give `--potentials PK PK ...`). ExploreMD runs one
LAMMPS job per (structure, condition) from fresh random melt packings (a calcfunction, in the graph), picks
candidates in the trust window, and LabelWorkChain labels them with the engine. Prints, per condition, the
frames, the accurate / candidate / failed fractions and how many were labeled, then the throughputs.
"""

import argparse

from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.calcfunctions import random_melt
from aiida_liqcryst.workflows.active_loop import conditions_for

ExploreMDWorkChain = WorkflowFactory('liqcryst.explore_md')
LabelWorkChain = WorkflowFactory('liqcryst.label')


def seconds(node):
    return (node.mtime - node.ctime).total_seconds()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--loop', type=int, help='PK of an ActiveLoopWorkChain: its final ensemble')
    source.add_argument('--potentials', type=int, nargs='+', help='PKs of DeepPotentialData (>= 2)')
    parser.add_argument('--engine', default='oracle', choices=['oracle', 'cp2k'])
    parser.add_argument('--temperatures', type=float, nargs='+', default=[3000.0])
    parser.add_argument('--pressures', type=float, nargs='+', default=[0.0, 20.0])
    parser.add_argument('--steps', type=int, default=600)
    parser.add_argument('--eps', type=float, nargs=2, default=[1.5, 3.0], metavar=('EPS_LO', 'EPS_HI'))
    parser.add_argument('--max-candidates', type=int, default=8)
    parser.add_argument('--formula-units', type=int, default=8)
    parser.add_argument('--structures', type=int, default=2)
    parser.add_argument('--seed', type=int, default=2024)
    args = parser.parse_args()

    if args.loop is not None:
        potentials = dict(orm.load_node(args.loop).outputs.potentials.items())
    else:
        potentials = {f'model_{i}': orm.load_node(pk) for i, pk in enumerate(args.potentials)}
    type_map = next(iter(potentials.values())).type_map
    structures = {
        f'melt_{i}': random_melt(orm.Dict({'Si': 1, 'O': 2}), orm.Int(args.formula_units), orm.Float(2.6),
                                 orm.Float(1.5), orm.Int(args.seed + i))
        for i in range(args.structures)
    }
    stage = {'temperatures': args.temperatures, 'pressures': args.pressures, 'steps': args.steps}

    builder = ExploreMDWorkChain.get_builder()
    builder.code = orm.load_code('lmp@localhost')
    builder.potentials = potentials
    builder.structures = structures
    builder.conditions = orm.List(conditions_for(stage, seed=args.seed))
    builder.eps_lo, builder.eps_hi = orm.Float(args.eps[0]), orm.Float(args.eps[1])
    builder.max_candidates = orm.Int(args.max_candidates)
    builder.selection = orm.Str('fps')
    _, explore = run_get_node(builder)
    if not explore.is_finished_ok:
        raise SystemExit(f'ExploreMDWorkChain<{explore.pk}> failed: exit {explore.exit_status} {explore.exit_message}')
    statistics = explore.outputs.statistics.get_dict()
    candidates = dict(explore.outputs.candidates.items()) if 'candidates' in explore.outputs else {}

    label = None
    if candidates:
        builder = LabelWorkChain.get_builder_from_protocol(
            orm.load_code(f'{args.engine}@localhost'), candidates, args.engine, type_map, protocol='demo')
        _, label = run_get_node(builder)

    labeled_by_condition = {}
    if label is not None and 'dataset' in label.outputs:
        failed = set(label.outputs.statistics.get_dict().get('failed', {}))
        for key, structure in candidates.items():
            if key not in failed:
                name = f"condition_{structure.base.extras.get('condition_index')}"
                labeled_by_condition[name] = labeled_by_condition.get(name, 0) + 1

    print(f'\nExploreMDWorkChain<{explore.pk}>, {len(potentials)} models, trust window {args.eps[0]}/{args.eps[1]} eV/Å')
    print(f"{'condition':12s} {'T K':>6s} {'P GPa':>6s} {'frames':>6s} {'accurate':>8s} {'candidate':>9s} {'failed':>6s} "
          f"{'picked':>6s} {'labeled':>7s}")
    conditions = conditions_for(stage, seed=args.seed)
    for name, c in sorted(statistics['conditions'].items()):
        spec = c['condition']
        print(f"{name:12s} {spec['temperature']:6.0f} {spec['pressure']:6.1f} "
              f"{c['frames']:6d} {c['accurate_fraction']:8.2f} {c['candidate_fraction']:9.2f} {c['failed_fraction']:6.2f} "
              f"{c.get('selected', 0):6d} {labeled_by_condition.get(name, 0):7d}")
    natoms = len(next(iter(structures.values())).sites)
    md_atom_steps = natoms * args.steps * len(structures) * len(conditions)
    md_calcs = [n for n in explore.called_descendants if n.process_label == 'ExploreMDCalculation']
    print(f'exploration: {len(md_calcs)} LAMMPS jobs, {seconds(explore):.0f} s wall, '
          f'{md_atom_steps / seconds(explore) / 1000:.2f} katom-steps/s through AiiDA')
    if label is not None:
        stats = label.outputs.statistics.get_dict()
        print(f"labeling: LabelWorkChain<{label.pk}> {stats['n_labeled']} labeled, {stats['n_failed']} failed, "
              f"{stats['wall_seconds']:.0f} s wall ({stats['seconds']:.0f} s in the engine), "
              f"{stats['n_labeled'] / stats['wall_seconds']:.2f} labels/s; dataset <{label.outputs.dataset.pk}>")
    else:
        print('no candidates: nothing to label')


main()
