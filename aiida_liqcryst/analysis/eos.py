"""Energy–volume curves of the polymorphs (Fig. 2): Birch–Murnaghan fits and curve-to-curve errors.

Volumes and energies can be per atom, per SiO2 or per cell, as long as both use the same count:
B0 = V d²E/dV² does not depend on that choice.
"""

from __future__ import annotations

import warnings

import numpy as np
from ase.units import GPa

MIN_POINTS = 5  # four parameters, and one point to spare


def _curve(volumes, energies, name='curve') -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(volumes, dtype=float).ravel()
    e = np.asarray(energies, dtype=float).ravel()
    if v.shape != e.shape:
        raise ValueError(f'{name}: {v.size} volumes but {e.size} energies')
    if not (np.all(np.isfinite(v)) and np.all(np.isfinite(e))):
        raise ValueError(f'{name}: volumes and energies must be finite')
    if np.any(v <= 0):
        raise ValueError(f'{name}: volumes must be positive')
    order = np.argsort(v)
    v, e = v[order], e[order]
    if np.any(np.diff(v) <= 0):
        raise ValueError(f'{name}: volumes must be distinct')
    return v, e


def birch_murnaghan_energy(volumes, e0: float, v0: float, b0_gpa: float, b0_prime: float) -> np.ndarray:
    """Third-order Birch–Murnaghan E(V) (ASE's ``birchmurnaghan`` form), B0 in GPa, V in Å^3, E in eV."""
    from ase.eos import birchmurnaghan

    return birchmurnaghan(np.asarray(volumes, dtype=float), e0, b0_gpa * GPa, b0_prime, v0)


def fit_birch_murnaghan(volumes, energies) -> dict[str, float]:
    """Fit the third-order Birch–Murnaghan equation of state (``ase.eos.EquationOfState``).

    :param volumes: volumes in Å^3 (at least five, distinct).
    :param energies: energies in eV, same count as the volumes.
    :returns: dict with ``v0`` (Å^3), ``e0`` (eV), ``b0`` (GPa), ``b0_prime``, ``rmse`` (eV, residual of the
        fit) and ``v0_in_range`` (False when the minimum lies outside the sampled volumes: extrapolated,
        not to be trusted).
    :raises ValueError: on too few or bad points, or when the fit does not converge.
    """
    from ase.eos import EquationOfState

    v, e = _curve(volumes, energies)
    if v.size < MIN_POINTS:
        raise ValueError(f'a Birch–Murnaghan fit needs at least {MIN_POINTS} points, got {v.size}')
    eos = EquationOfState(v, e, eos='birchmurnaghan')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # covariance warnings; convergence is checked below
            eos.fit(warn=False)
    except (RuntimeError, ValueError) as exc:  # scipy's curve_fit gives up
        raise ValueError(f'Birch–Murnaghan fit failed: {exc}') from exc
    e0, b0, b0_prime, v0 = (float(x) for x in eos.eos_parameters)
    if not all(np.isfinite([e0, b0, b0_prime, v0])) or b0 <= 0 or v0 <= 0:
        raise ValueError(f'Birch–Murnaghan fit gave unphysical parameters: V0={v0}, B0={b0 / GPa} GPa')
    residual = e - birch_murnaghan_energy(v, e0, v0, b0 / GPa, b0_prime)
    return {
        'v0': v0,
        'e0': e0,
        'b0': b0 / GPa,
        'b0_prime': b0_prime,
        'rmse': float(np.sqrt(np.mean(residual**2))),
        'v0_in_range': bool(v[0] <= v0 <= v[-1]),
    }


ALIGNMENTS = ('own_minimum', 'reference', 'absolute')


def eos_curve_rmse(
    volumes_ref,
    energies_ref,
    volumes,
    energies,
    alignment: str = 'own_minimum',
    reference_energies: tuple[float, float] | None = None,
) -> float:
    """RMSE (in the energy unit of the inputs) between a reference E(V) curve (DFT) and another one (DeePMD).

    The curves are compared at the reference volumes inside the volume range both cover; when the two
    volume grids differ, the second curve is interpolated there with a cubic spline. Alignment of the
    energy zero before the comparison:

    - ``'own_minimum'`` (default): each curve relative to its own lowest sampled energy, so only the
      shape of the curve counts (a constant offset between methods does not);
    - ``'reference'``: each curve relative to the reference energy of the same method, given as
      ``reference_energies=(e_ref, e)``, e.g. the alpha-quartz minimum from each method: the relative
      energies of the polymorphs then count too;
    - ``'absolute'``: no shift (the methods must share their energy zero, as DeePMD trained on DFT does).

    :raises ValueError: on a bad alignment, missing reference energies, or fewer than three common volumes.
    """
    v_ref, e_ref = _curve(volumes_ref, energies_ref, 'reference curve')
    v, e = _curve(volumes, energies, 'curve')
    if alignment not in ALIGNMENTS:
        raise ValueError(f'alignment must be one of {ALIGNMENTS}, got {alignment!r}')
    if alignment == 'reference':
        if reference_energies is None or len(reference_energies) != 2:
            raise ValueError("alignment='reference' needs reference_energies=(e_ref, e), one per method")
        e_ref = e_ref - float(reference_energies[0])
        e = e - float(reference_energies[1])
    elif alignment == 'own_minimum':
        e_ref = e_ref - e_ref.min()
        e = e - e.min()

    mask = (v_ref >= v[0] - 1e-9) & (v_ref <= v[-1] + 1e-9)
    if mask.sum() < 3:
        raise ValueError(f'the curves share fewer than 3 volumes (reference {v_ref[[0, -1]]}, other {v[[0, -1]]})')
    if v.size == v_ref.size and np.allclose(v, v_ref, rtol=1e-8, atol=1e-9):
        e_at_ref = e
    else:
        from scipy.interpolate import CubicSpline

        e_at_ref = CubicSpline(v, e)(v_ref[mask]) if v.size > 2 else np.interp(v_ref[mask], v, e)
        e_ref = e_ref[mask]
    return float(np.sqrt(np.mean((e_at_ref - e_ref) ** 2)))
