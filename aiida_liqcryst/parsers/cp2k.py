"""Parser of CP2K single points for labels: aiida-cp2k's parser, plus the exit code of an SCF that did not converge.

CP2K before 2023.2 (Debian 12 ships 2023.1) does not abort when the SCF does not converge: it prints
``SCF run NOT converged``, goes on to forces and stress, and aiida-cp2k's parser then returns exit status 0. Such a
label is wrong, so this parser gives it aiida-cp2k's own ``ERROR_SCF_NOT_CONVERGED``, and the restart handler of
``Cp2kLabelWorkChain`` filters on that exit code, as aiida-quantumespresso's ``PwBaseWorkChain`` does.
"""

from __future__ import annotations

from aiida_cp2k.parsers import Cp2kBaseParser

from aiida_liqcryst.engines.cp2k import SCF_NOT_CONVERGED


class Cp2kLabelParser(Cp2kBaseParser):
    """aiida-cp2k's base parser that also refuses a run whose SCF did not converge (entry point ``liqcryst.cp2k``)."""

    def _check_stdout_for_errors(self, output_string):
        exit_code = super()._check_stdout_for_errors(output_string)
        if exit_code is None and SCF_NOT_CONVERGED in output_string:
            return self.exit_codes.ERROR_SCF_NOT_CONVERGED
        return exit_code
