"""Label efficiency: held-out force RMSE against labels added, random vs farthest-point (fps) candidate pick.

    verdi -p liqcryst run benchmarks/label_efficiency.py <ActiveLoop PK> [--sizes 4 8 16] [--json out.json]

One pool, one oracle, one seed set: the candidate frames of the loop's first exploration (iteration 0, trained on
the initial data only). For each method and each number n of labels, ``select_candidates`` is run again on that
exploration's MD outputs with ``max_candidates = n`` (same trust window, same seed), the picked frames are labeled
by the oracle (LabelWorkChain; frames picked by both methods are labeled once, through caching) and one model is
trained (demo protocol, seed 0) on the initial data plus those labels. Its force RMSE on held-out liquid frames
(the demo's ValidateWorkChain frames, by a DeepmdTestCalculation) is the score; n = 0 is the model of the initial
data alone. One training seed: differences smaller than the seed-to-seed spread of the ensemble say nothing.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from aiida import orm
from aiida.common.links import LinkType
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory

from aiida_liqcryst.deepmd.calcfunctions import merge_datasets
from aiida_liqcryst.workflows.explore_md import select_candidates
from aiida_liqcryst.workflows.label import LabelWorkChain
from aiida_liqcryst.workflows.train_ensemble import TrainEnsembleWorkChain

DeepmdTrainCalculation = CalculationFactory('liqcryst.deepmd.train')
DeepmdTestCalculation = CalculationFactory('liqcryst.deepmd.test')

sys.path.insert(0, str(pathlib.Path(sys.argv[0]).resolve().parent))  # `verdi run` names this file in argv[0]
from shared import validation_dataset  # noqa: E402


def one_link(node, label: str):
    return node.base.links.get_outgoing(link_label_filter=label).one().node


def pool_of(loop: orm.WorkflowNode) -> tuple[dict, orm.CalcFunctionNode]:
    """The inputs of iteration 0's ``select_candidates`` (MD outputs, trust window, conditions) and the node."""
    explore = one_link(loop, 'explore_0')
    selection = one_link(explore, 'select_candidates')
    inputs = selection.base.links.get_incoming(link_type=LinkType.INPUT_CALC).all()  # not the CALL from the work chain
    return {link.link_label: link.node for link in inputs}, selection


def held_out(loop: orm.WorkflowNode) -> orm.Data:
    dataset = validation_dataset(loop)
    if dataset is None:
        raise SystemExit('no finished ValidateWorkChain of the final model_0: run the demo (it validates) first')
    return dataset


def score(dp, dataset, validation) -> dict:
    parameters = TrainEnsembleWorkChain.get_protocol_inputs('demo')['parameters']
    parameters['model']['type_map'] = dataset.type_map
    builder = DeepmdTrainCalculation.get_builder()
    builder.code, builder.datasets, builder.seed = dp, {'data': dataset}, orm.Int(0)
    builder.parameters = orm.Dict(parameters)
    _, trained = run_get_node(builder)
    assert trained.is_finished_ok, trained.exit_message
    builder = DeepmdTestCalculation.get_builder()
    builder.code, builder.potential, builder.dataset = dp, trained.outputs.potential, validation
    _, tested = run_get_node(builder)
    assert tested.is_finished_ok, tested.exit_message
    errors = tested.outputs.output_parameters.get_dict()
    return {'frames': dataset.nframes, 'training': trained.pk, 'test': tested.pk,
            'force_rmse': round(errors['rmse_f'], 4), 'energy_rmse_mev_per_atom': round(1e3 * errors['rmse_e_per_atom'], 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('loop', help='PK or UUID of a finished ActiveLoopWorkChain (with a ValidateWorkChain of its model_0)')
    parser.add_argument('--sizes', type=int, nargs='+', default=[4, 8, 16])
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    loop = orm.load_node(args.loop)
    dp, oracle = orm.load_code('dp@localhost'), orm.load_code('oracle@localhost')
    validation = held_out(loop)
    initial = one_link(loop, 'initial_labels').outputs.dataset
    inputs, selection = pool_of(loop)
    pool = selection.outputs.statistics['total']['candidate']
    result = {'loop': loop.pk, 'pool': pool, 'initial_frames': initial.nframes, 'validation_frames': validation.nframes,
              'baseline': score(dp, initial, validation), 'random': {}, 'fps': {}}
    print(f"pool: {pool} candidate frames of iteration 0; initial data {initial.nframes} frames; {validation.nframes} "
          f"held out; n = 0: force RMSE {result['baseline']['force_rmse']} eV/Å")
    for n in args.sizes:
        for method in ('random', 'fps'):
            picked = select_candidates(**{**inputs, 'max_candidates': orm.Int(n), 'selection_method': orm.Str(method)})
            structures = {key: node for key, node in picked.items() if key.startswith('candidate_')}
            builder = LabelWorkChain.get_builder_from_protocol(oracle, structures, 'oracle', initial.type_map,
                                                               overrides={'batch_size': len(structures)})
            _, labeled = run_get_node(builder)
            assert labeled.is_finished_ok, labeled.exit_message
            dataset = merge_datasets(previous=initial, added=labeled.outputs.dataset)
            result[method][n] = {'labels': len(structures), **score(dp, dataset, validation)}
            print(f"n = {n:3d} {method:6s}: {len(structures)} labels, force RMSE {result[method][n]['force_rmse']} eV/Å, "
                  f"energy RMSE {result[method][n]['energy_rmse_mev_per_atom']} meV/atom")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
