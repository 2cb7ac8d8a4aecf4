"""Model deviation of a DeePMD ensemble: reading deepmd's ``model_devi.out`` and classifying frames."""

from __future__ import annotations

import numpy as np

COLUMNS = ('step', 'max_devi_v', 'min_devi_v', 'avg_devi_v', 'max_devi_f', 'min_devi_f', 'avg_devi_f')
CLASSES = ('accurate', 'candidate', 'failed')
PERCENTILES = (10, 50, 90)


def read_model_devi(text: str) -> dict[str, np.ndarray]:
    """The columns of deepmd's ``model_devi.out`` as arrays (``step`` int, the deviations float, eV/Å).

    Column names come from the ``#`` header when present (extra columns, e.g. per-atom ones, are kept by
    name); otherwise the 7 standard columns are assumed. Lines that are not complete rows (a run that died
    while writing) are skipped.

    :raises ValueError: when the header lacks one of the standard columns.
    """
    names = list(COLUMNS)
    rows = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith('#'):
            header = stripped.lstrip('#').split()
            if header:
                names = header
                missing = [c for c in COLUMNS if c not in names]
                if missing:
                    raise ValueError(f'model deviation header lacks columns {missing}: {stripped}')
            continue
        words = stripped.split()
        if len(words) < len(names):
            continue
        try:
            rows.append([float(w) for w in words[: len(names)]])
        except ValueError:
            continue
    table = np.array(rows, dtype=float).reshape(-1, len(names))
    result = {name: table[:, i] for i, name in enumerate(names)}
    result['step'] = result['step'].astype(int)
    return result


def select_steps(devi: dict[str, np.ndarray], steps) -> dict[str, np.ndarray]:
    """The rows of ``devi`` at ``steps`` (in that order; the first row of a repeated step).

    Used to align the deviation with the stored frames: after a blow-up deepmd may still write a row for
    a step no frame exists for (with no atoms left; its min exceeds its max).

    :raises KeyError: a step without a row.
    """
    index = {}
    for i, step in enumerate(devi['step']):
        index.setdefault(int(step), i)
    missing = [int(s) for s in steps if int(s) not in index]
    if missing:
        raise KeyError(f'no model deviation for steps {missing[:5]}')
    rows = np.array([index[int(s)] for s in steps], dtype=int)
    return {name: values[rows] for name, values in devi.items()}


def classify(max_devi_f, eps_lo: float, eps_hi: float) -> np.ndarray:
    """'accurate' (< eps_lo), 'candidate' (eps_lo <= x < eps_hi) or 'failed' (>= eps_hi, or not finite) per frame.

    :raises ValueError: unless 0 <= eps_lo < eps_hi.
    """
    if not 0 <= eps_lo < eps_hi:
        raise ValueError(f'trust levels must satisfy 0 <= eps_lo < eps_hi, got eps_lo={eps_lo}, eps_hi={eps_hi}')
    values = np.asarray(max_devi_f, dtype=float)
    labels = np.full(values.shape, 'failed', dtype=object)
    finite = np.isfinite(values)
    labels[finite & (values < eps_lo)] = 'accurate'
    labels[finite & (values >= eps_lo) & (values < eps_hi)] = 'candidate'
    return labels.astype(str)


def counts(labels) -> dict:
    """``frames``, the count and the fraction of every class (fractions 0 when there are no frames)."""
    labels = np.asarray(labels)
    total = int(labels.size)
    result = {'frames': total}
    for name in CLASSES:
        n = int(np.sum(labels == name))
        result[name] = n
        result[f'{name}_fraction'] = n / total if total else 0.0
    return result


def summarize(max_devi_f, eps_lo: float, eps_hi: float) -> dict:
    """Counts and fractions of the classes plus the 10/50/90 percentiles of ``max_devi_f`` (eV/Å)."""
    values = np.asarray(max_devi_f, dtype=float)
    result = counts(classify(values, eps_lo, eps_hi))
    finite = values[np.isfinite(values)]
    for q in PERCENTILES:
        result[f'max_devi_f_p{q}'] = float(np.percentile(finite, q)) if finite.size else None
    return result
