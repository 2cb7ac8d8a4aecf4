"""The demo study with `verdi run`: HP active loop on a small SiO2 melt with the oracle, then validation.

    verdi -p liqcryst run examples/active_loop_demo.py [--protocol demo]

Same as `aiida-liqcryst demo` (which also runs `aiida-liqcryst setup` first).
"""

import argparse

from aiida_liqcryst.demo import run_demo

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument('--protocol', default='demo')
args = parser.parse_args()
run_demo(protocol=args.protocol)
