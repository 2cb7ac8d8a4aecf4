"""Fig. 2 with `verdi run`: E(V) curves of the eleven SiO2 polymorphs with DeePMD potentials vs the oracle.

    verdi -p liqcryst run examples/eos_scan.py --potential LP=<pk> --potential HP=<pk> [--protocol demo]
        [--polymorphs stishovite alpha_quartz] [--vdos] [--code ase@localhost]

Potentials are DeepPotentialData nodes (e.g. `outputs.potential` of a DeepmdTrainCalculation, or a model of
an ActiveLoopWorkChain). Prints one table per potential and the path of the E–V grid figure it writes.
"""

import argparse
import pathlib

from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.analysis.eos import format_comparison_table

EOSScanWorkChain = WorkflowFactory('liqcryst.eos_scan')


def potential_argument(text: str):
    label, _, identifier = text.partition('=')
    if not identifier:
        raise argparse.ArgumentTypeError(f'give LABEL=PK (e.g. HP=1234), got {text!r}')
    return label, identifier


def print_table(table: dict) -> None:
    print()
    print('\n'.join(format_comparison_table(table)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--potential', type=potential_argument, action='append', required=True,
                        help='LABEL=PK of a DeepPotentialData (repeat for LP and HP)')
    parser.add_argument('--protocol', default='demo', choices=sorted(EOSScanWorkChain.get_available_protocols()))
    parser.add_argument('--polymorphs', nargs='*', default=None, help='subset of the eleven (default: all)')
    parser.add_argument('--vdos', action='store_true', help='also run the VDOS insets')
    parser.add_argument('--code', default='ase@localhost', help='the aiida-liqcryst-ase code')
    parser.add_argument('--output', default='.', help='folder for the E–V grid PNGs')
    args = parser.parse_args()

    potentials = {label: orm.load_node(identifier) for label, identifier in args.potential}
    builder = EOSScanWorkChain.get_builder_from_protocol(
        orm.load_code(args.code), potentials, reference='oracle', polymorphs=args.polymorphs, protocol=args.protocol,
        overrides={'run_vdos': True} if args.vdos else None,
    )
    results, node = run_get_node(builder)
    print(f'EOSScanWorkChain<{node.pk}> finished with exit status {node.exit_status}: {node.exit_message or "ok"}')
    for label, table in results.get('tables', {}).items():
        print_table(table.get_dict())
        if label in results.get('figures', {}):
            path = pathlib.Path(args.output) / f'ev_grid_{label}.png'
            path.write_bytes(results['figures'][label].get_content(mode='rb'))
            print(f'figure: {path}')


main()
