"""Checks of the structures an evolutionary search found: re-labeling metrics and plot (Fig. 3), RDFs vs the
polymorph library (Fig. 4), Si coordination.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aiida_liqcryst.analysis.metrics import error_metrics
from aiida_liqcryst.analysis.rdf import SI_O_CUTOFF, mean_coordination, partial_rdfs, rdf_similarity

LOW_ENTHALPY_WINDOW = 1.0  # eV/atom above the best enthalpy of the re-labeled set


def relabel_metrics(potential_energy, reference_energy, potential_enthalpy, window: float = LOW_ENTHALPY_WINDOW) -> dict:
    """Potential vs reference energies per atom (eV/atom) of the same relaxed geometries.

    Energies are compared as they are, not aligned: the potential was trained on labels of the reference, so an
    offset is an error (``mean_difference`` = mean(potential − reference) says how much of the RMSE is an offset,
    ``rmse_aligned`` is the RMSE after removing it). Energies, not enthalpies: at equal geometry both methods add the
    same PV, so errors are the same and r is not inflated by the PV spread.

    The low-enthalpy window holds the structures whose *potential* enthalpy per atom is within ``window`` eV/atom of
    the lowest potential enthalpy of the set (the structures the search ranks as best).

    :returns: ``{all: error_metrics, window: error_metrics or None, window_ev_per_atom, n_window, mean_difference,
        rmse_aligned}`` (``error_metrics``: rmse, mae, max_abs_error, pearson_r, n).
    """
    pot = np.asarray(potential_energy, dtype=float)
    ref = np.asarray(reference_energy, dtype=float)
    enthalpy = np.asarray(potential_enthalpy, dtype=float)
    if not pot.shape == ref.shape == enthalpy.shape:
        raise ValueError(f'arrays differ in size: {pot.size}, {ref.size}, {enthalpy.size}')
    summary = {'all': error_metrics(ref, pot), 'window_ev_per_atom': float(window)}
    inside = enthalpy - enthalpy.min() <= window
    summary['n_window'] = int(inside.sum())
    summary['window'] = error_metrics(ref[inside], pot[inside]) if inside.any() else None
    diff = pot - ref
    summary['mean_difference'] = float(diff.mean())
    summary['rmse_aligned'] = float(np.sqrt(np.mean((diff - diff.mean()) ** 2)))
    return summary


def relabel_plot(path, reference_energy, potential_energy, reference_label: str = 'oracle',
                 potential_label: str = 'DeePMD', highlight=None) -> Path:
    """Correlation of energies per atom (eV/atom) with the error histogram (meV/atom) as inset (paper Fig. 3).

    ``highlight``: boolean mask of points drawn in another colour (e.g. the top-K structures).
    """
    from aiida_liqcryst.analysis.plots import _figure, _save

    ref = np.asarray(reference_energy, dtype=float)
    pot = np.asarray(potential_energy, dtype=float)
    metrics = error_metrics(ref, pot)
    figure = _figure(4.8, 4.4)
    ax = figure.subplots()
    mask = np.zeros(ref.size, bool) if highlight is None else np.asarray(highlight, bool)
    ax.scatter(ref[~mask], pot[~mask], s=14, alpha=0.7, label='random sample')
    if mask.any():
        ax.scatter(ref[mask], pot[mask], s=18, alpha=0.9, color='C3', label='top ranked')
    lo, hi = min(ref.min(), pot.min()), max(ref.max(), pot.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.1
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color='k', lw=0.8)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f'{reference_label} energy (eV/atom)')
    ax.set_ylabel(f'{potential_label} energy (eV/atom)')
    r = metrics['pearson_r']
    ax.set_title(f'r = {r:.3f}, RMSE = {1e3 * metrics["rmse"]:.1f} meV/atom' if np.isfinite(r)
                 else f'RMSE = {1e3 * metrics["rmse"]:.1f} meV/atom', fontsize='medium')
    ax.legend(loc='upper left', fontsize='small')
    inset = ax.inset_axes([0.6, 0.1, 0.36, 0.3])
    inset.hist(1e3 * (pot - ref), bins=max(5, min(30, ref.size)), color='C2')
    inset.set_xlabel('error (meV/atom)', fontsize='xx-small', labelpad=1)
    inset.tick_params(labelsize='xx-small', pad=1)
    return _save(figure, path)


def si_coordination(atoms, cutoff: float = SI_O_CUTOFF) -> float | None:
    """Mean number of O within ``cutoff`` Å of Si (None without Si or O)."""
    symbols = set(atoms.get_chemical_symbols())
    if not {'Si', 'O'} <= symbols:
        return None
    return mean_coordination(atoms, 'Si', 'O', cutoff)


def compare_with_polymorphs(atoms, names: Sequence[str] | None = None, rmax: float = 6.0, nbins: int = 120,
                            smearing: float = 0.15) -> dict:
    """Similarity of the partial RDFs (Si–Si, Si–O, O–O) of ``atoms`` to each polymorph of the library.

    Each polymorph is scaled to the volume per atom of ``atoms`` first (the similarity compares arrangements, not
    densities: a relaxation with an approximate potential changes the volume by a few %). Similarity:
    :func:`aiida_liqcryst.analysis.rdf.rdf_similarity` (1 identical, ~0 unrelated) on ``smearing``-broadened RDFs.

    :returns: ``{closest, similarity, similarities: {name: s}, r, rdfs: {pair: g}, polymorph_rdfs: {pair: g}}``
        (the RDFs of ``atoms`` and of the closest polymorph at the same density).
    """
    from aiida_liqcryst.structures import polymorphs

    names = [polymorphs.normalize_name(n) for n in (names or polymorphs.POLYMORPHS)]
    r, rdfs = partial_rdfs(atoms, rmax=rmax, nbins=nbins, smearing=smearing)
    volume = atoms.get_volume() / len(atoms)
    similarities, library = {}, {}
    for name in names:
        reference = polymorphs.get_atoms(name, primitive=True)
        reference.set_cell(reference.cell * (volume * len(reference) / reference.get_volume()) ** (1 / 3), scale_atoms=True)
        _, library[name] = partial_rdfs(reference, rmax=rmax, nbins=nbins, smearing=smearing)
        similarities[name] = rdf_similarity(rdfs, library[name])
    finite = {k: v for k, v in similarities.items() if np.isfinite(v)}
    closest = max(finite, key=finite.get) if finite else None
    return {
        'closest': closest,
        'similarity': finite.get(closest),
        'similarities': similarities,
        'r': r,
        'rdfs': rdfs,
        'polymorph_rdfs': library.get(closest),
    }
