"""Error metrics between a reference (DFT, the oracle) and a prediction (a DeePMD model).

Plain functions on arrays; results are plain dicts of floats so they fit in an ``orm.Dict``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _paired(reference, prediction) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=float).ravel()
    pred = np.asarray(prediction, dtype=float).ravel()
    if ref.shape != pred.shape:
        raise ValueError(f'reference and prediction differ in size: {ref.size} != {pred.size}')
    if ref.size == 0:
        raise ValueError('no values to compare')
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(pred))):
        raise ValueError('reference and prediction must be finite (found NaN or inf)')
    return ref, pred


def error_metrics(reference, prediction) -> dict[str, float]:
    """RMSE, MAE, maximum absolute error and Pearson r of ``prediction`` against ``reference``.

    Arrays of any shape are flattened (same size required). Units are those of the inputs.
    ``pearson_r`` is NaN when either array is constant (undefined correlation).

    :returns: dict with ``rmse``, ``mae``, ``max_abs_error``, ``pearson_r``, ``n``.
    """
    ref, pred = _paired(reference, prediction)
    diff = pred - ref
    if ref.size > 1 and np.ptp(ref) > 0 and np.ptp(pred) > 0:
        pearson = float(np.corrcoef(ref, pred)[0, 1])
    else:
        pearson = float('nan')
    return {
        'rmse': float(np.sqrt(np.mean(diff**2))),
        'mae': float(np.mean(np.abs(diff))),
        'max_abs_error': float(np.max(np.abs(diff))),
        'pearson_r': pearson,
        'n': int(ref.size),
    }


def parity_summary(
    reference_energy: Sequence[float],
    predicted_energy: Sequence[float],
    natoms: Sequence[int],
    reference_forces: Sequence | None = None,
    predicted_forces: Sequence | None = None,
) -> dict[str, dict[str, float]]:
    """Error metrics of the energy per atom (eV/atom) and of the force components (eV/Å), as in Fig. 1.

    :param reference_energy: total energies (eV), one per frame.
    :param natoms: atoms per frame (frames may differ in size).
    :param reference_forces: per frame an (N_i, 3) array (a list for frames of different size); optional.
    :returns: ``{'energy_per_atom': metrics, 'force_components': metrics}`` (forces only when given).
    """
    natoms = np.asarray(natoms, dtype=float).ravel()
    ref_e = np.asarray(reference_energy, dtype=float).ravel()
    pred_e = np.asarray(predicted_energy, dtype=float).ravel()
    if natoms.shape != ref_e.shape or np.any(natoms < 1):
        raise ValueError(f'natoms must give a positive atom count per frame ({ref_e.size} frames), got {natoms.size}')
    summary = {'energy_per_atom': error_metrics(ref_e / natoms, pred_e / natoms)}
    if (reference_forces is None) != (predicted_forces is None):
        raise ValueError('give both reference_forces and predicted_forces, or neither')
    if reference_forces is not None:
        ref_f = flatten_forces(reference_forces)
        pred_f = flatten_forces(predicted_forces)
        if ref_f.size != 3 * natoms.sum():
            raise ValueError(f'reference_forces hold {ref_f.size // 3} atoms but natoms sums to {int(natoms.sum())}')
        summary['force_components'] = error_metrics(ref_f, pred_f)
    return summary


def flatten_forces(forces) -> np.ndarray:
    """All force components of a list of (N_i, 3) frames (or one (nframes, N, 3) array) as one flat array."""
    if isinstance(forces, np.ndarray):
        return forces.astype(float).ravel()
    return np.concatenate([np.asarray(f, dtype=float).ravel() for f in forces]) if len(forces) else np.empty(0)


def parity_from_frames(reference_frames: Sequence[dict], predicted_frames: Sequence[dict]) -> dict:
    """:func:`parity_summary` of two lists of frames (DEVELOPERS.md frames: ``symbols``, ``energy``, ``forces``)."""
    if len(reference_frames) != len(predicted_frames):
        raise ValueError(f'{len(reference_frames)} reference frames but {len(predicted_frames)} predicted')
    natoms = [len(frame['symbols']) for frame in reference_frames]
    return parity_summary(
        [float(np.ravel(f['energy'])[0]) for f in reference_frames],
        [float(np.ravel(f['energy'])[0]) for f in predicted_frames],
        natoms,
        [f['forces'] for f in reference_frames],
        [f['forces'] for f in predicted_frames],
    )
