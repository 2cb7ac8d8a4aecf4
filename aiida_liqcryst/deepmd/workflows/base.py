"""``DeepmdTrainBaseWorkChain``: a DeePMD training that recovers from a NaN loss and from the walltime."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from ..calculations.train import DeepmdTrainCalculation


def validate_factor(value, _=None):
    if value is not None and not 0.0 < value.value < 1.0:
        return f'`nan_learning_rate_factor` must lie in (0, 1), got {value.value}'
    return None


class DeepmdTrainBaseWorkChain(BaseRestartWorkChain):
    """Run a ``DeepmdTrainCalculation`` until it succeeds.

    NaN loss (310): multiply the learning rate (``start_lr`` and ``stop_lr``, so the schedule keeps its shape) by
    ``nan_learning_rate_factor`` and rerun. Out of walltime (320): rerun with ``restart_from`` the killed job's
    remote folder and ``restart_mode='restart'``, continuing from its last checkpoint.
    """

    _process_class = DeepmdTrainCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(DeepmdTrainCalculation, namespace='train')
        spec.input(
            'nan_learning_rate_factor',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.1),
            validator=validate_factor,
            help='Factor (0, 1) applied to the learning rate after a NaN loss.',
        )
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.expose_outputs(DeepmdTrainCalculation)

    def setup(self):
        """Take the calculation inputs from the ``train`` namespace."""
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(DeepmdTrainCalculation, 'train'))

    @process_handler(priority=500, exit_codes=[DeepmdTrainCalculation.exit_codes.ERROR_NAN_LOSS])
    def handle_nan_loss(self, calculation):
        """Lower the learning rate and train again (from the same starting point)."""
        factor = self.inputs.nan_learning_rate_factor.value
        parameters = self.ctx.inputs.parameters.get_dict()
        learning_rate = parameters.setdefault('learning_rate', {})
        old = learning_rate.get('start_lr', 1e-3)  # deepmd's default start_lr
        for key in ('start_lr', 'stop_lr'):
            if key in learning_rate or key == 'start_lr':
                learning_rate[key] = float(learning_rate.get(key, old)) * factor
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.report(
            f'{calculation.process_label}<{calculation.pk}> hit a NaN loss: '
            f'start_lr {old:g} -> {learning_rate["start_lr"]:g}'
        )
        return ProcessHandlerReport(do_break=True)

    @process_handler(priority=400, exit_codes=[DeepmdTrainCalculation.exit_codes.ERROR_OUT_OF_WALLTIME])
    def handle_out_of_walltime(self, calculation):
        """Continue the training from the checkpoint in the killed job's remote folder."""
        self.ctx.inputs.restart_from = calculation.outputs.remote_folder
        self.ctx.inputs.restart_mode = orm.Str('restart')
        self.report(f'{calculation.process_label}<{calculation.pk}> ran out of walltime: restarting from checkpoint')
        return ProcessHandlerReport(do_break=True)
