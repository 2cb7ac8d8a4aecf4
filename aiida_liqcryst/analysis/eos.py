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


# Columns of one row of :func:`eos_comparison_table` (energies per atom: meV/atom for differences).
TABLE_COLUMNS = (
    'v0_potential', 'e0_potential', 'b0_potential', 'b0_prime_potential', 'v0_in_range_potential',
    'v0_reference', 'e0_reference', 'b0_reference', 'b0_prime_reference', 'v0_in_range_reference',
    'delta_v0_percent', 'delta_b0_percent',
    'relative_energy_potential', 'relative_energy_reference', 'relative_energy_error',
    'curve_rmse', 'relative_curve_rmse', 'same_geometry_rmse', 'errors',
)
TABLE_UNITS = {
    'v0': 'Å^3/atom', 'e0': 'eV/atom', 'b0': 'GPa', 'b0_prime': '1', 'delta_*_percent': '%',
    'relative_energy_*': 'meV/atom', '*_rmse': 'meV/atom',
}
_FIT_KEYS = ('v0', 'e0', 'b0', 'b0_prime', 'v0_in_range')
EXTRAPOLATION = 1.5  # a fitted V0 beyond 1.5x the scanned range is no minimum at all


def _fit_or_error(curve, what, errors):
    if curve is None:
        errors.append(f'{what}: no curve')
        return None
    try:
        fit = fit_birch_murnaghan(*curve)
    except ValueError as exc:
        errors.append(f'{what}: {exc}')
        return None
    if not fit['v0_in_range']:
        v = np.asarray(curve[0], dtype=float)
        if not v.min() / EXTRAPOLATION <= fit['v0'] <= v.max() * EXTRAPOLATION:
            errors.append(f'{what}: no minimum near the scanned volumes (fitted V0 {fit["v0"]:.4g})')
            return None
        errors.append(f'{what}: V0 {fit["v0"]:.4g} extrapolated outside the scanned volumes')
    return fit


def eos_comparison_table(curves: dict, energy_zero: str | None = 'alpha_quartz') -> dict:
    """Compare the E(V) curves of a potential with those of a reference method, phase by phase (Fig. 2).

    :param curves: ``{phase: {'potential': (V, E), 'reference': (V, E), 'same_geometry': (V, E)}}`` with V in
        Å^3/atom and E in eV/atom. ``potential`` and ``reference`` are each method's own scan (the reference
        may also be the reference energies of the potential's geometries); ``same_geometry`` (optional) holds
        the reference energies of exactly the potential's geometries (same V as ``potential``). A missing
        curve gives None entries and a note in ``errors``.
    :param energy_zero: phase whose Birch–Murnaghan E0 is the energy zero of the relative energies, per
        method; when it is absent or its reference fit failed, the phase of lowest reference E0 is used
        instead. Where the potential's fit of the zero phase failed, the potential's relative energies are None.
    :returns: ``{'rows': {phase: {column: value}}, 'energy_zero': phase or None}`` with the columns of
        :data:`TABLE_COLUMNS` (None where a value could not be computed):

        - Birch–Murnaghan V0, E0, B0, B0' of each method (``*_potential``, ``*_reference``);
        - ``delta_v0_percent`` / ``delta_b0_percent``: 100 (potential - reference) / reference;
        - ``relative_energy_*``: E0(phase) - E0(energy_zero) in meV/atom for each method, and their difference;
        - ``curve_rmse``: shape of the curve, each curve relative to its own lowest sampled energy, compared at
          the reference volumes (potential interpolated by a cubic spline) inside the common range;
        - ``relative_curve_rmse``: the same with each curve relative to its method's E0 of ``energy_zero``,
          so errors of the relative phase energies count too;
        - ``same_geometry_rmse``: potential vs reference energies of identical geometries, no alignment
          (the potential was fitted to the reference, so they share the energy zero);
        - ``errors``: list of what failed or is doubtful (fits that did not converge, V0 extrapolated outside
          the scanned volumes (kept up to a factor 1.5, else no fit), curves too far apart to compare).
    """
    fits, rows = {}, {}
    errors_by_phase = {}
    for phase, methods in curves.items():
        errors = []
        fits[phase] = {m: _fit_or_error(methods.get(m), m, errors) for m in ('potential', 'reference')}
        errors_by_phase[phase] = errors

    # The zero is chosen on the reference alone, so the reference column never depends on the potential.
    with_reference = [p for p in fits if fits[p]['reference'] is not None]
    if energy_zero in with_reference:
        zero = energy_zero
    else:
        zero = min(with_reference, key=lambda p: fits[p]['reference']['e0']) if with_reference else None

    for phase, methods in curves.items():
        row = dict.fromkeys(TABLE_COLUMNS)
        errors = errors_by_phase[phase]
        for method in ('potential', 'reference'):
            fit = fits[phase][method]
            for key in _FIT_KEYS:
                row[f'{key}_{method}'] = None if fit is None else fit[key]
        pot, ref = fits[phase]['potential'], fits[phase]['reference']
        if pot is not None and ref is not None:
            row['delta_v0_percent'] = 100.0 * (pot['v0'] - ref['v0']) / ref['v0']
            row['delta_b0_percent'] = 100.0 * (pot['b0'] - ref['b0']) / ref['b0']
        if zero is not None:
            for method, fit in (('potential', pot), ('reference', ref)):
                if fit is not None and fits[zero][method] is not None:
                    row[f'relative_energy_{method}'] = 1000.0 * (fit['e0'] - fits[zero][method]['e0'])
            if row['relative_energy_potential'] is not None and row['relative_energy_reference'] is not None:
                row['relative_energy_error'] = row['relative_energy_potential'] - row['relative_energy_reference']
        if methods.get('potential') is not None and methods.get('reference') is not None:
            try:
                row['curve_rmse'] = 1000.0 * eos_curve_rmse(*methods['reference'], *methods['potential'])
                if zero is not None and fits[zero]['potential'] is not None:
                    zeros = (fits[zero]['reference']['e0'], fits[zero]['potential']['e0'])
                    row['relative_curve_rmse'] = 1000.0 * eos_curve_rmse(
                        *methods['reference'], *methods['potential'], alignment='reference', reference_energies=zeros
                    )
            except ValueError as exc:
                errors.append(f'curve comparison: {exc}')
        same = methods.get('same_geometry')
        if same is not None and methods.get('potential') is not None:
            e_pot = np.asarray(methods['potential'][1], dtype=float)
            e_ref = np.asarray(same[1], dtype=float)
            if e_pot.shape == e_ref.shape and np.all(np.isfinite(e_pot)) and np.all(np.isfinite(e_ref)):
                row['same_geometry_rmse'] = 1000.0 * float(np.sqrt(np.mean((e_pot - e_ref) ** 2)))
            else:
                errors.append('same geometry: energies missing or not finite')
        row['errors'] = errors
        rows[phase] = row
    return {'rows': rows, 'energy_zero': zero}


def format_comparison_table(table: dict) -> list[str]:
    """The rows of :func:`eos_comparison_table` (as stored in an EOSScanWorkChain ``tables`` output) as text lines."""
    zero = table.get('energy_zero')
    lines = [
        f"{table.get('potential')} vs {table.get('reference')} (energies relative to {zero}; V Å^3/atom, B GPa, "
        'E meV/atom)'
    ]
    header = (
        f"{'phase':20s} {'V0':>7s} {'V0 ref':>7s} {'dV0%':>6s} {'B0':>6s} {'B0 ref':>6s} {'dB0%':>6s} "
        f"{'dE':>7s} {'dE ref':>7s} {'err':>7s} {'RMSE':>6s}"
    )
    lines += [header, '-' * len(header)]

    def fmt(value, spec):
        return format(value, spec) if value is not None else 'n/a'.rjust(len(format(0.0, spec)))

    for phase, row in table['phases'].items():
        lines.append(
            f"{phase:20s} {fmt(row['v0_potential'], '7.2f')} {fmt(row['v0_reference'], '7.2f')} "
            f"{fmt(row['delta_v0_percent'], '+6.1f')} {fmt(row['b0_potential'], '6.0f')} {fmt(row['b0_reference'], '6.0f')} "
            f"{fmt(row['delta_b0_percent'], '+6.0f')} {fmt(row['relative_energy_potential'], '7.0f')} "
            f"{fmt(row['relative_energy_reference'], '7.0f')} {fmt(row['relative_energy_error'], '+7.0f')} "
            f"{fmt(row['curve_rmse'], '6.1f')}"
        )
        lines += [f'    note: {note}' for note in row.get('errors', [])]
    return lines
