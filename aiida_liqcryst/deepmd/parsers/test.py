"""Parser of ``DeepmdTestCalculation``: dp test's own error summary and the per-frame parity data."""

from __future__ import annotations

import re

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from .lcurve import read_table

SUMMARY_MARKER = 'weighted average of errors'
# dp test's summary lines -> output_parameters keys
SUMMARY_LINES = {
    'Energy RMSE/Natoms': 'rmse_e_per_atom',
    'Energy MAE/Natoms': 'mae_e_per_atom',
    'Force  RMSE': 'rmse_f',
    'Force  MAE': 'mae_f',
    'Virial RMSE/Natoms': 'rmse_v_per_atom',
    'Virial MAE/Natoms': 'mae_v_per_atom',
}


def read_summary(log: str) -> dict[str, float]:
    """The weighted-average errors dp test logs after all systems (eV, eV/Å)."""
    section = log.rsplit(SUMMARY_MARKER, 1)[-1] if SUMMARY_MARKER in log else ''
    summary = {}
    for label, key in SUMMARY_LINES.items():
        match = re.search(re.escape(label) + r'\s*:\s*(\S+)', section)
        if match:
            summary[key] = float(match.group(1))
    return summary


def split_columns(table: dict[str, np.ndarray], prefix_ref: str, prefix_pred: str) -> tuple[np.ndarray, np.ndarray]:
    """Reference and predicted columns of a dp test detail table (``data_*`` / ``pred_*``) as 2D arrays."""
    reference = np.column_stack([v for k, v in table.items() if k.startswith(prefix_ref)])
    predicted = np.column_stack([v for k, v in table.items() if k.startswith(prefix_pred)])
    return reference, predicted


class DeepmdTestParser(Parser):
    """Turn dp test's log and detail files into ``output_parameters`` and ``parity``."""

    def parse(self, **kwargs):
        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        for filename in ('test.log', 'detail.e_peratom.out', 'detail.f.out'):
            if filename not in names:
                return self.exit_codes.ERROR_MISSING_OUTPUT.format(filename=filename)
        summary = read_summary(retrieved.get_object_content('test.log', mode='r'))
        if 'rmse_e_per_atom' not in summary or 'rmse_f' not in summary:
            return self.exit_codes.ERROR_UNREADABLE_OUTPUT.format(filename='test.log', reason='no error summary')

        parity = orm.ArrayData()
        tables = {}
        for filename in ('detail.e_peratom.out', 'detail.f.out', 'detail.v_peratom.out'):
            if filename not in names:
                continue
            try:
                tables[filename] = read_table(retrieved.get_object_content(filename, mode='r'))
            except ValueError as exception:
                return self.exit_codes.ERROR_UNREADABLE_OUTPUT.format(filename=filename, reason=exception)
        energy_ref, energy_pred = split_columns(tables['detail.e_peratom.out'], 'data_e', 'pred_e')
        force_ref, force_pred = split_columns(tables['detail.f.out'], 'data_f', 'pred_f')
        parity.set_array('energy_reference', energy_ref[:, 0])
        parity.set_array('energy_predicted', energy_pred[:, 0])
        parity.set_array('forces_reference', force_ref)
        parity.set_array('forces_predicted', force_pred)
        if 'detail.v_peratom.out' in tables:
            virial_ref, virial_pred = split_columns(tables['detail.v_peratom.out'], 'data_v', 'pred_v')
            parity.set_array('virial_reference', virial_ref)
            parity.set_array('virial_predicted', virial_pred)
        self.out('parity', parity)

        summary['max_f_error'] = float(np.max(np.abs(force_pred - force_ref)))
        summary['nframes'] = len(energy_ref)
        self.out('output_parameters', orm.Dict(summary))
        return None
