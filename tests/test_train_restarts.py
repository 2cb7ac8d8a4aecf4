"""DeepmdTrainBaseWorkChain on real failures of ``dp train``: a NaN loss and a job killed mid-training."""

from __future__ import annotations

import re

import numpy as np
import pytest
from aiida import orm
from aiida.engine import run_get_node

from aiida_liqcryst.deepmd.workflows.base import DeepmdTrainBaseWorkChain

# Kills dp (a child of the job script named `dp`) as soon as it has written its first complete checkpoint (TensorFlow
# writes the .meta file last), the way a scheduler kills a job at its walltime. Only in a fresh run: a restart finds
# the copied `checkpoint` and runs on.
# Not `ulimit -t`: dp spends ~7 CPU seconds importing before its first step, so whether a CPU limit hits before
# the first checkpoint, or after the last step, depends on the machine; this kill point does not.
KILL_AFTER_FIRST_CHECKPOINT = """
if [ ! -e checkpoint ]; then
  (
    saved() { ls model.ckpt-*.meta >/dev/null 2>&1; }
    for _ in $(seq 2400); do saved && break; sleep 0.05; done  # gives up after about 2 minutes
    saved || exit 0
    for stat in /proc/[0-9]*/stat; do
      read -r pid comm _ ppid _ < "$stat" 2>/dev/null || continue
      if [ "$ppid" = "$$" ] && [ "$comm" = "(dp)" ]; then kill -KILL "$pid"; fi
    done
  ) &
fi
"""


STEPS = 600


def calculations(workchain):
    return sorted(workchain.called, key=lambda n: n.ctime)


def test_nan_loss_lowers_learning_rate(codes, sio2_dataset, tiny_parameters):
    """A learning rate of 1e300 blows the weights up (dp: `NaN detected`); the work chain lowers it and succeeds."""
    parameters = tiny_parameters
    parameters['learning_rate'].update(start_lr=1e300, stop_lr=1e299)
    parameters['training'].update(numb_steps=20, disp_freq=5, save_freq=20)
    results, node = run_get_node(
        DeepmdTrainBaseWorkChain,
        train={
            'code': codes['dp'],
            'datasets': {'melt': sio2_dataset},
            'parameters': orm.Dict(parameters),
            'seed': orm.Int(1),
        },
        nan_learning_rate_factor=orm.Float(1e-303),
    )
    assert node.is_finished_ok, node.exit_message
    first, second = calculations(node)
    assert first.exit_status == 310
    assert 'NaN detected' in first.outputs.retrieved.get_object_content('train.log')
    assert first.inputs.parameters['learning_rate']['start_lr'] == pytest.approx(1e300)
    assert second.is_finished_ok
    assert second.inputs.parameters['learning_rate']['start_lr'] == pytest.approx(1e-3)
    assert second.inputs.parameters['learning_rate']['stop_lr'] == pytest.approx(1e-4)
    potential = results['potential']
    assert potential.creator.uuid == second.uuid
    assert np.all(np.isfinite(results['learning_curve'].get_array('rmse_trn')))


def test_killed_training_restarts_from_checkpoint(codes, sio2_dataset, tiny_parameters):
    """dp killed after its first checkpoint (320): the restart continues from it and the model is frozen."""
    parameters = tiny_parameters
    # TensorFlow trains the tiny net at ~5 ms a batch: enough steps that the kill lands long before the end
    parameters['training'].update(numb_steps=STEPS, disp_freq=10, save_freq=10)
    results, node = run_get_node(
        DeepmdTrainBaseWorkChain,
        train={
            'code': codes['dp'],
            'datasets': {'melt': sio2_dataset},
            'parameters': orm.Dict(parameters),
            'seed': orm.Int(1),
            'metadata': {'options': {'prepend_text': KILL_AFTER_FIRST_CHECKPOINT}},
        },
    )
    assert node.is_finished_ok, node.exit_message
    first, second = calculations(node)
    assert first.exit_status == 320, first.exit_message
    log = first.outputs.retrieved.get_object_content('train.log')
    assert 'saved checkpoint model.ckpt' in log and 'finished training' not in log  # TensorFlow's log lines
    assert 'restart_from' not in first.inputs
    assert second.inputs.restart_from.uuid == first.outputs.remote_folder.uuid
    assert second.inputs.restart_mode.value == 'restart'
    assert second.is_finished_ok
    # dp really continued: it logged the restart and did not start again at step 1
    second_log = second.outputs.retrieved.get_object_content('train.log')
    first_new_step = int(re.search(r'Batch\s+(\d+):', second_log).group(1))
    assert first_new_step > 1
    assert results['potential'].creator.uuid == second.uuid
    steps = results['learning_curve'].get_array('step')
    assert steps[-1] == STEPS and np.all(np.diff(steps) > 0)
    assert results['output_parameters']['steps_done'] == STEPS
