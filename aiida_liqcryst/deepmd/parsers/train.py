"""Parser of ``DeepmdTrainCalculation``: the frozen model, the learning curve and the final errors."""

from __future__ import annotations

import datetime
import pathlib
import re

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from ..backends import BACKENDS
from ..calculations.train import training_backend
from ..data.potential import DeepPotentialData
from .lcurve import loss_decreased, read_lcurve
from .test import read_summary

NAN_MARKERS = ('NaN detected', 'Non-finite gradient norm')
TIMESTAMP = re.compile(r'^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]', re.MULTILINE)


def log_wall_time(log: str) -> float | None:
    """Seconds between the first and the last time-stamped line of a deepmd log."""
    stamps = TIMESTAMP.findall(log)
    if len(stamps) < 2:
        return None
    first, last = (datetime.datetime.strptime(s, '%Y-%m-%d %H:%M:%S,%f') for s in (stamps[0], stamps[-1]))
    return (last - first).total_seconds()


def summarize(curve: dict[str, np.ndarray]) -> dict:
    """Final errors of a learning curve (deepmd's rmse_e is per atom), the steps done and whether the loss fell."""
    summary = {'steps_done': int(curve['step'][-1])}
    for name in ('rmse_e_trn', 'rmse_e_val', 'rmse_f_trn', 'rmse_f_val', 'rmse_v_trn', 'rmse_v_val', 'lr'):
        if name in curve:
            value = float(curve[name][-1])
            summary[name if name != 'lr' else 'final_lr'] = value if np.isfinite(value) else None
    use_validation = 'rmse_val' in curve and np.all(np.isfinite(curve['rmse_val']))
    loss = curve['rmse_val'] if use_validation else curve.get('rmse_trn')
    summary['loss_decreased'] = loss_decreased(loss) if loss is not None else False
    return summary


class DeepmdTrainParser(Parser):
    """Turn a training folder into ``potential``, ``learning_curve`` and ``output_parameters``."""

    def parse(self, **kwargs):
        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        log = retrieved.get_object_content('train.log', mode='r') if 'train.log' in names else ''
        backend = BACKENDS[training_backend(self.node)]
        parameters = self.node.inputs.parameters.get_dict()
        numb_steps = parameters.get('training', {}).get('numb_steps')

        curve, lcurve_error = None, None
        if 'lcurve.out' in names:
            try:
                curve = read_lcurve(retrieved.get_object_content('lcurve.out', mode='r'))
            except ValueError as exception:
                lcurve_error = str(exception)
        else:
            lcurve_error = 'no lcurve.out was written'
        if curve is not None:
            arrays = orm.ArrayData()
            for name, column in curve.items():
                arrays.set_array(name, column)
            self.out('learning_curve', arrays)

        if any(marker in log for marker in NAN_MARKERS):
            return self.exit_codes.ERROR_NAN_LOSS
        finished = backend.finished in log
        if not finished:
            if 'Traceback' in log:  # dp raised: a crash, not a kill (a killed job leaves no traceback)
                return self.exit_codes.ERROR_TRAINING_FAILED.format(reason=log.strip().splitlines()[-1][:500])
            if 'checkpoint' in names:
                step = int(curve['step'][-1]) if curve is not None else 'unknown'
                return self.exit_codes.ERROR_OUT_OF_WALLTIME.format(step=step, numb_steps=numb_steps)
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(
                filename='a checkpoint: dp train stopped before its first save (see train.log)'
            )
        if curve is None:
            return self.exit_codes.ERROR_LCURVE.format(reason=lcurve_error)

        temporary = pathlib.Path(kwargs.get('retrieved_temporary_folder') or '.')
        compress = self.node.inputs.compress.value
        model = temporary / (backend.compressed_model if compress else backend.model)
        if not (temporary / backend.model).is_file():
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(
                filename=f'{backend.model} (dp freeze failed: see freeze.log)'
            )
        if compress and not model.is_file():
            return self.exit_codes.ERROR_COMPRESS
        self.out('potential', DeepPotentialData(str(model), filename=model.name, compressed=compress))

        summary = summarize(curve)
        summary.update({
            'numb_steps': numb_steps, 'wall_time': log_wall_time(log), 'compressed': compress, 'backend': backend.name,
        })
        if 'test' in self.node.inputs and self.node.inputs.test.value:
            errors = read_summary(retrieved.get_object_content('test.log', mode='r')) if 'test.log' in names else {}
            if 'rmse_f' in errors:
                summary.update({'rmse_e_dataset': errors.get('rmse_e_per_atom'), 'rmse_f_dataset': errors['rmse_f']})
            else:  # the model is fine: keep it, say why its dataset errors are missing
                self.logger.warning('dp test wrote no error summary (see test.log): no rmse_*_dataset')
        self.out('output_parameters', orm.Dict(summary))
        return None
