"""Training cost: seconds per batch of the demo and paper networks; fine-tuning vs training from scratch.

    verdi -p liqcryst run benchmarks/training.py <ActiveLoop PK> [--speed-steps 200] [--json out.json]

Speed: DeepmdTrainCalculation with the ``demo`` and the ``paper`` protocol's network and loss for ``speed-steps``
steps (batch size 1) on the loop's final dataset; seconds per batch = dp train's logged wall time / steps (it
includes the data statistics at the start, a few seconds).

Fine-tuning: the loop's last training (iteration k) on its dataset, done twice with the demo protocol's steps:
from scratch and from model_0 of iteration k-1 (``restart_mode='init_model'``, what ``reuse_models`` does), and,
when the loop had ``reuse_parameters``, a third time from model_0 with them merged in (what the loop itself did).
Both see the same held-out frames as validation data (the demo's ValidateWorkChain frames when there are any,
else the frames labeled in iteration k-1), all of them in every validation batch. The target is the
scratch run's final validation force RMSE (mean of its last three rows); the table gives when each run first
reaches it (steps and seconds) and each run's final value.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import CalculationFactory

from aiida_liqcryst.protocols import recursive_merge
from aiida_liqcryst.workflows.train_ensemble import TrainEnsembleWorkChain

sys.path.insert(0, str(pathlib.Path(sys.argv[0]).resolve().parent))  # `verdi run` names this file in argv[0]
from shared import validation_dataset  # noqa: E402

DeepmdTrainCalculation = CalculationFactory('liqcryst.deepmd.train')


def parameters_of(protocol: str, type_map: list[str], steps: int, **training) -> dict:
    parameters = TrainEnsembleWorkChain.get_protocol_inputs(protocol)['parameters']
    parameters['model']['type_map'] = type_map
    parameters['training'].update({'numb_steps': steps, 'disp_freq': max(steps // 20, 1), 'save_freq': steps, **training})
    return parameters


def train(code, dataset, parameters: dict, validation=None, restart_from=None) -> orm.CalcJobNode:
    builder = DeepmdTrainCalculation.get_builder()
    builder.code = code
    builder.datasets = {'data': dataset}
    if validation is not None:
        builder.validation = {'held_out': validation}
    builder.parameters = orm.Dict(parameters)
    builder.seed = orm.Int(0)
    builder.test = orm.Bool(False)
    if restart_from is not None:
        builder.restart_from = restart_from
        builder.restart_mode = orm.Str('init_model')
    _, node = run_get_node(builder)
    assert node.is_finished_ok, f'training <{node.pk}> failed: {node.exit_message}'
    return node


def speed(code, dataset, steps: int) -> dict:
    result = {}
    for protocol in ('demo', 'paper'):
        node = train(code, dataset, parameters_of(protocol, dataset.type_map, steps))
        wall = node.outputs.output_parameters['wall_time']
        result[protocol] = {'calculation': node.pk, 'steps': steps, 'wall_time': round(wall, 1),
                            'seconds_per_batch': round(wall / steps, 4)}
    return result


def reach(curve: orm.ArrayData, target: float, seconds_per_step: float) -> dict:
    steps, values = curve.get_array('step'), curve.get_array('rmse_f_val')
    hit = np.nonzero(values <= target)[0]
    first = int(steps[hit[0]]) if len(hit) else None
    return {'final_rmse_f_val': round(float(values[-3:].mean()), 4),
            'steps_to_target': first, 'seconds_to_target': None if first is None else round(first * seconds_per_step, 1)}


def fine_tuning(code, loop: orm.WorkflowNode) -> dict:
    trainings = sorted(
        (link.link_label, link.node) for link in loop.base.links.get_outgoing(link_label_filter='train_%').all()
    )
    if len(trainings) < 2:
        raise SystemExit('the loop ran fewer than two iterations: nothing to fine-tune from')
    trainings = sorted(trainings, key=lambda item: int(item[0].rsplit('_', 1)[1]))
    (_, previous), (label, last) = trainings[-2], trainings[-1]
    k = int(label.rsplit('_', 1)[1])
    model = previous.outputs.potentials['model_0']
    dataset = next(iter(last.outputs.potentials['model_0'].creator.inputs.datasets.values()))
    labels = [link.node for link in loop.base.links.get_outgoing(link_label_filter=f'label_{k - 1}').all()]
    validation = validation_dataset(loop) or (labels[0].outputs.dataset if labels else None)
    if validation is None:
        raise SystemExit('no held-out frames: neither a ValidateWorkChain of the final model nor labels of iteration k-1')
    steps = TrainEnsembleWorkChain.get_protocol_inputs('demo')['parameters']['training']['numb_steps']
    parameters = parameters_of('demo', dataset.type_map, steps, validation_data={'batch_size': validation.nframes})
    previous_folder = model.creator.outputs.remote_folder
    runs = {'scratch': train(code, dataset, parameters, validation),
            'fine_tune': train(code, dataset, parameters, validation, restart_from=previous_folder)}
    steps_of = {'scratch': steps, 'fine_tune': steps}
    if 'reuse_parameters' in loop.inputs:  # what the loop itself did: its reuse_parameters merged in
        reuse = loop.inputs.reuse_parameters.get_dict()
        steps_of['fine_tune_reuse'] = reuse.get('training', {}).get('numb_steps', steps)
        base = parameters_of('demo', dataset.type_map, steps_of['fine_tune_reuse'], validation_data={'batch_size': validation.nframes})
        merged = recursive_merge(base, reuse)
        runs['fine_tune_reuse'] = train(code, dataset, merged, validation, restart_from=previous_folder)
    target = float(runs['scratch'].outputs.learning_curve.get_array('rmse_f_val')[-3:].mean())
    result = {'iteration': k, 'dataset_frames': dataset.nframes, 'validation_frames': validation.nframes,
              'steps': steps, 'target_rmse_f_val': round(target, 4)}
    for name, node in runs.items():
        wall = node.outputs.output_parameters['wall_time']
        result[name] = {'calculation': node.pk, 'steps': steps_of[name], 'wall_time': round(wall, 1),
                        **reach(node.outputs.learning_curve, target, wall / steps_of[name])}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('loop', help='PK or UUID of a finished ActiveLoopWorkChain')
    parser.add_argument('--speed-steps', type=int, default=200)
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    loop = orm.load_node(args.loop)
    code = orm.load_code('dp@localhost')
    result = {'speed': speed(code, loop.outputs.dataset, args.speed_steps), 'fine_tuning': fine_tuning(code, loop)}
    for protocol, r in result['speed'].items():
        print(f"{protocol} network: {r['seconds_per_batch']} s per batch ({r['steps']} steps in {r['wall_time']} s)")
    f = result['fine_tuning']
    print(f"iteration {f['iteration']} ({f['dataset_frames']} frames, {f['validation_frames']} held out): target force "
          f"RMSE {f['target_rmse_f_val']} eV/Å (scratch, end)")
    for name in ('scratch', 'fine_tune', 'fine_tune_reuse'):
        if name in f:
            r = f[name]
            print(f"  {name}: reaches it at step {r['steps_to_target']} ({r['seconds_to_target']} s); final "
                  f"{r['final_rmse_f_val']} eV/Å; {r['steps']} steps in {r['wall_time']} s")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
