"""Cp2kLabelWorkChain: aiida-cp2k's restart work chain with a handler for single points whose SCF does not converge.

aiida-cp2k's own handler (``restart_incomplete_calculation``) restarts an aborted SCF only when its last gradient
is already small; a hot, disordered melt frame often stops far from that. And CP2K before 2023.2 (Debian 12 ships
2023.1) does not abort at all: it prints ``SCF run NOT converged`` and goes on to forces and stress. The parser of
the label jobs (``liqcryst.cp2k``, :mod:`aiida_liqcryst.parsers.cp2k`) gives both cases aiida-cp2k's exit code
``ERROR_SCF_NOT_CONVERGED``; the handler here filters on it. Such a calculation is run again,
starting from its last wavefunction, first with twice the SCF iterations, then also with the more robust OT
set-up (conjugate-gradient minimiser, FULL_ALL preconditioner), before the label is given up.
"""

from __future__ import annotations

import copy

from aiida import orm
from aiida.engine import ProcessHandlerReport, process_handler
from aiida.plugins import CalculationFactory, WorkflowFactory

from aiida_liqcryst.engines.cp2k import OUTPUT_FILE, SCF_NOT_CONVERGED

#: the parser of the label jobs: aiida-cp2k's, plus the exit code of an SCF that did not converge
PARSER_NAME = 'liqcryst.cp2k'

Cp2kBaseWorkChain = WorkflowFactory('cp2k.base')
Cp2kCalculation = CalculationFactory('cp2k')

WFN_RESTART = './parent_calc/aiida-RESTART.wfn'  # where aiida-cp2k puts the parent folder's wavefunction
ROBUST_OT = {'MINIMIZER': 'CG', 'PRECONDITIONER': 'FULL_ALL'}


def scf_fix(parameters: dict, attempt: int) -> tuple[dict, str] | None:
    """The CP2K input for the next try after ``attempt`` SCF failures (0-based), and what changed; None: give up.

    Attempt 0: twice MAX_SCF (inner and outer loop), restart from the last wavefunction. Attempt 1: twice again
    and OT with CG + FULL_ALL. Plain function of the nested input dict (testable without CP2K).
    """
    if attempt > 1:
        return None
    parameters = copy.deepcopy(parameters)
    scf = parameters['FORCE_EVAL']['DFT'].setdefault('SCF', {})
    scf['MAX_SCF'] = 2 * int(scf.get('MAX_SCF', 50))
    outer = scf.setdefault('OUTER_SCF', {})
    outer['MAX_SCF'] = 2 * int(outer.get('MAX_SCF', 10))
    scf['SCF_GUESS'] = 'RESTART'  # CP2K falls back to the atomic guess if the file is missing
    parameters['FORCE_EVAL']['DFT']['RESTART_FILE_NAME'] = WFN_RESTART  # the key aiida-cp2k's own restart uses
    change = f'MAX_SCF {scf["MAX_SCF"]} (outer {outer["MAX_SCF"]}), restart from the last wavefunction'
    if attempt == 1:
        scf.setdefault('OT', {}).update(ROBUST_OT)
        change += ', OT ' + ' '.join(f'{k} {v}' for k, v in ROBUST_OT.items())
    return parameters, change


def scf_failed(calculation) -> bool:
    """Whether the main output of a finished Cp2kCalculation says an SCF did not converge."""
    if 'retrieved' not in calculation.outputs:
        return False
    name = calculation.base.attributes.get('output_filename', OUTPUT_FILE)
    try:
        text = calculation.outputs.retrieved.base.repository.get_object_content(name)
    except FileNotFoundError:
        return False
    return SCF_NOT_CONVERGED in text


class Cp2kLabelWorkChain(Cp2kBaseWorkChain):
    """A CP2K single point that retries an unconverged SCF with more iterations and a more robust minimiser."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.exit_code(
            320, 'ERROR_SCF_NOT_CONVERGED',
            message='the SCF did not converge, also with more iterations and the CG minimiser: the label is left out',
        )

    def setup(self):
        super().setup()
        self.ctx.scf_attempts = 0

    @process_handler(priority=450, exit_codes=[Cp2kCalculation.exit_codes.ERROR_SCF_NOT_CONVERGED])
    def handle_scf_not_converged(self, calculation):
        """Rerun from the last wavefunction with more SCF iterations, then also with CG + FULL_ALL; then stop."""
        fix = scf_fix(self.ctx.inputs.parameters.get_dict(), self.ctx.scf_attempts)
        if fix is None:
            self.report(f'{calculation.process_label}<{calculation.pk}>: SCF still not converged; giving up')
            return ProcessHandlerReport(True, self.exit_codes.ERROR_SCF_NOT_CONVERGED)
        parameters, change = fix
        self.ctx.scf_attempts += 1
        self.ctx.inputs.parameters = orm.Dict(parameters)
        self.ctx.inputs.parent_calc_folder = calculation.outputs.remote_folder
        self.report(f'{calculation.process_label}<{calculation.pk}>: SCF not converged; retrying with {change}')
        return ProcessHandlerReport(True)  # handled: aiida-cp2k's generic restart handler must not act on it too
