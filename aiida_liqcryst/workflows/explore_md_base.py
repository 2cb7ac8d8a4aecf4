"""ExploreMDBaseWorkChain: an ExploreMDCalculation restarted with a shorter timestep when the MD blows up."""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_

from aiida_liqcryst.calculations.explore_md import ExploreMDCalculation
from aiida_liqcryst.exploration.lammps_input import Condition

TIMESTEP_FACTOR = 0.5


class ExploreMDBaseWorkChain(BaseRestartWorkChain):
    """Run an :class:`ExploreMDCalculation`; on lost atoms rerun it with half the timestep (same simulated time).

    When the restarts are used up, the truncated trajectory and model deviation of the last run are still
    returned, with exit code 310, so a parent work chain can use the frames reached before the blow-up.
    """

    _process_class = ExploreMDCalculation

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            ExploreMDCalculation, namespace='md',
            namespace_options={'help': 'Inputs of the ExploreMDCalculation (the condition is `md.parameters`).'},
        )
        spec.inputs['max_iterations'].default = lambda: orm.Int(3)
        spec.expose_outputs(ExploreMDCalculation)
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.exit_code(
            310, 'ERROR_MD_UNSTABLE_UNRECOVERABLE',
            message='the MD still blew up with timestep {timestep} ps after {iterations} runs; '
            'the truncated outputs of the last run are attached.',
        )

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(ExploreMDCalculation, 'md'))
        self.ctx.condition = Condition.from_dict(self.ctx.inputs.parameters.get_dict())

    @process_handler(priority=500, exit_codes=[ExploreMDCalculation.exit_codes.ERROR_MD_UNSTABLE])
    def handle_unstable_md(self, node):
        """Atoms lost or out of range: halve the timestep, double the steps and sampling intervals."""
        if self.ctx.iteration >= self.inputs.max_iterations.value:
            # out of restarts: keep the frames reached before the blow-up (the caller still counts them)
            self.ctx.is_finished = True
            self._attach_outputs(node)
            self.report(f'{self.ctx.process_name}<{node.pk}> blew up again; returning its truncated outputs')
            exit_code = self.exit_codes.ERROR_MD_UNSTABLE_UNRECOVERABLE.format(
                timestep=self.ctx.condition.timestep, iterations=self.ctx.iteration
            )
            return ProcessHandlerReport(do_break=True, exit_code=exit_code)
        self.ctx.condition = self.ctx.condition.with_timestep(TIMESTEP_FACTOR)
        self.ctx.inputs.parameters = orm.Dict(self.ctx.condition.to_dict())
        self.report(
            f'{self.ctx.process_name}<{node.pk}> blew up ({node.exit_message}); restarting with timestep '
            f'{self.ctx.condition.timestep:g} ps and {self.ctx.condition.steps} steps'
        )
        return ProcessHandlerReport(do_break=True)
