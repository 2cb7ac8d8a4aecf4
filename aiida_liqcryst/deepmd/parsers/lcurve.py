"""One reader for deepmd-kit's commented tables: ``lcurve.out`` and the ``dp test`` details (``*.e_peratom.out``,
``*.f.out``, ...).

Plain functions, no AiiDA: the column names come from the ``#`` header line that has as many names as the table
has columns (``# step rmse_trn ... lr`` in lcurve.out; ``# <system>: data_e pred_e`` in dp test details).
"""

from __future__ import annotations

import io

import numpy as np


def read_table(text: str) -> dict[str, np.ndarray]:
    """Columns of a deepmd commented table by header name (float arrays, in file order).

    Comment lines inside the table (a restarted training appends a second header) are skipped.

    :raises ValueError: no numeric rows, ragged rows, or no header naming every column.
    """
    try:
        data = np.loadtxt(io.StringIO(text), comments='#', ndmin=2)
    except ValueError as exception:
        raise ValueError(f'unreadable table: {exception}') from exception
    if data.size == 0:
        raise ValueError('the table has no rows')
    ncols = data.shape[1]
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith('#'):
            continue
        header = line.lstrip('#')
        if ':' in header:  # dp test details: "<system>: data_e pred_e" (system paths have no spaces here)
            header = header.rsplit(':', 1)[1]
        names = header.split()
        if len(names) == ncols and len(set(names)) == ncols:
            return {name: data[:, i] for i, name in enumerate(names)}
    raise ValueError(f'no header line names the {ncols} columns of the table')


def read_lcurve(text: str) -> dict[str, np.ndarray]:
    """The learning curve of ``lcurve.out``, rows superseded by a restart dropped (steps strictly increasing).

    A run killed after its last checkpoint logged steps that its restart repeats: the later rows win.
    """
    table = read_table(text)
    if 'step' not in table:
        raise ValueError('lcurve.out has no `step` column')
    steps = table['step']
    keep = np.ones(len(steps), dtype=bool)
    for i in range(1, len(steps)):
        if steps[i] <= steps[:i][keep[:i]].max(initial=-np.inf):
            keep[:i] &= steps[:i] < steps[i]
    return {name: column[keep] for name, column in table.items()}


def loss_decreased(values: np.ndarray) -> bool:
    """Whether a noisy loss went down: mean over the last third of the rows below the mean over the first third.

    Needs at least three finite rows; single-batch losses fluctuate, so two rows are not compared directly.
    """
    values = np.asarray(values, dtype=float)
    if len(values) < 3 or not np.all(np.isfinite(values)):
        return False
    third = len(values) // 3
    return bool(values[-third:].mean() < values[:third].mean())


def rmse(reference: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(reference)) ** 2)))
