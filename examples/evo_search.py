"""Fig. 3-4 with `verdi run`: an evolutionary search of SiO2 crystals with a DeePMD potential, checked with the oracle.

    verdi -p liqcryst run examples/evo_search.py --potential <pk> [--pressure 10] [--protocol demo]
        [--population 8] [--generations 6] [--formula-units 2 4] [--seed 0] [--code ase@localhost]

The potential is a DeepPotentialData node (e.g. a model of an ActiveLoopWorkChain trained on the HP melt).
Prints the ranked structures (enthalpy, space group, Si coordination), the re-labeling metrics and the closest
library polymorph of the best structure, and writes the correlation plot and the best structure (CIF).
"""

import argparse

from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.demo import format_search, write_search_files

EvoSearchWorkChain = WorkflowFactory('liqcryst.evo_search')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--potential', required=True, help='PK or UUID of a DeepPotentialData')
    parser.add_argument('--pressure', type=float, default=0.0, help='GPa')
    parser.add_argument('--protocol', default='demo', choices=sorted(EvoSearchWorkChain.get_available_protocols()))
    parser.add_argument('--population', type=int, default=None, help='candidates per generation (protocol default)')
    parser.add_argument('--generations', type=int, default=None, help='largest number of generations')
    parser.add_argument('--formula-units', type=int, nargs=2, default=None, metavar=('MIN', 'MAX'))
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--code', default='ase@localhost', help='the aiida-liqcryst-ase code')
    parser.add_argument('--output', default='.', help='folder for the plot and the best structure')
    args = parser.parse_args()

    overrides = {}
    for key, value in (('population_size', args.population), ('generations', args.generations),
                       ('formula_units', args.formula_units), ('seed', args.seed)):
        if value is not None:
            overrides[key] = value
    builder = EvoSearchWorkChain.get_builder_from_protocol(
        orm.load_code(args.code), orm.load_node(args.potential), {'Si': 1, 'O': 2}, pressure=args.pressure,
        protocol=args.protocol, overrides=overrides,
    )
    results, node = run_get_node(builder)
    print(f'EvoSearchWorkChain<{node.pk}> finished with exit status {node.exit_status}: {node.exit_message or "ok"}')
    if 'summary' not in results:
        return
    for line in format_search(results, top=20):
        print(line)
    write_search_files(results, args.output, f'evo_search_{node.pk}')


main()
