"""The paper's figures as PNG files: parity (Fig. 1), E–V grid with VDOS insets (Fig. 2), VDOS overlay.

Figures are made with ``matplotlib.figure.Figure`` (Agg canvas), not pyplot: no display, no global state.
Every function writes one PNG and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from aiida_liqcryst.analysis.metrics import error_metrics, flatten_forces


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, format='png')
    return path


def _parity_panel(ax, reference, prediction, unit: str, scale: float, title: str, label: str):
    ref = np.asarray(reference, dtype=float).ravel()
    pred = np.asarray(prediction, dtype=float).ravel()
    rmse = error_metrics(ref, pred)['rmse'] * scale
    ax.scatter(ref, pred, s=6, alpha=0.6, label=f'{label}: RMSE {rmse:.3g} {unit}')
    lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
    pad = 0.05 * (hi - lo) if hi > lo else 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color='k', lw=0.8)
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(title)
    ax.legend(loc='upper left', fontsize='small')


def parity_plot(
    path,
    reference_energy_per_atom,
    predicted_energy_per_atom,
    reference_forces=None,
    predicted_forces=None,
    reference_label: str = 'DFT',
    predicted_label: str = 'DeePMD',
) -> Path:
    """Parity of energy per atom (eV/atom) and, when given, force components (eV/Å); RMSE in the legend (meV)."""
    with_forces = reference_forces is not None and predicted_forces is not None
    figure = _figure(9.0 if with_forces else 4.5, 4.2)
    axes = figure.subplots(1, 2 if with_forces else 1, squeeze=False)[0]
    _parity_panel(
        axes[0], reference_energy_per_atom, predicted_energy_per_atom, 'meV/atom', 1e3, 'energy', predicted_label
    )
    axes[0].set_xlabel(f'{reference_label} energy (eV/atom)')
    axes[0].set_ylabel(f'{predicted_label} energy (eV/atom)')
    if with_forces:
        _parity_panel(
            axes[1], flatten_forces(reference_forces), flatten_forces(predicted_forces), 'meV/Å', 1e3,
            'force components', predicted_label,
        )
        axes[1].set_xlabel(f'{reference_label} force (eV/Å)')
        axes[1].set_ylabel(f'{predicted_label} force (eV/Å)')
    return _save(figure, path)


def ev_grid(
    path,
    curves: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]],
    insets: Mapping[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]] | None = None,
    titles: Mapping[str, str] | None = None,
    ncols: int = 4,
    volume_unit: str = 'Å$^3$/atom',
    energy_unit: str = 'eV/atom',
    inset_fmax: float | None = None,
) -> Path:
    """Energy–volume curves, one panel per polymorph, one line per method (Fig. 2).

    :param curves: ``{polymorph: {method: (volumes, energies)}}``.
    :param insets: optional ``{polymorph: {method: (frequencies_thz, vdos)}}``, drawn as a VDOS inset.
    :param titles: optional panel titles by polymorph (default: the key).
    :param inset_fmax: frequency axis limit of the insets in THz (default: where the spectra end).
    """
    if not curves:
        raise ValueError('no curves to plot')
    ncols = max(1, min(ncols, len(curves)))
    nrows = math.ceil(len(curves) / ncols)
    figure = _figure(3.2 * ncols, 2.8 * nrows)
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    colours = {}  # one colour per method across all panels
    for methods in list(curves.values()) + list((insets or {}).values()):
        for method in methods:
            colours.setdefault(method, f'C{len(colours) % 10}')
    for ax, (name, methods) in zip(axes, curves.items()):
        for method, (volumes, energies) in methods.items():
            order = np.argsort(volumes)
            ax.plot(
                np.asarray(volumes)[order], np.asarray(energies)[order], marker='o', ms=3, label=method,
                color=colours[method],
            )
        ax.set_title((titles or {}).get(name, name), fontsize='medium')
        ax.set_xlabel(f'V ({volume_unit})', fontsize='small')
        ax.set_ylabel(f'E ({energy_unit})', fontsize='small')
        if insets and name in insets:
            # E(V) is U-shaped: the upper middle of the panel is free
            inset = ax.inset_axes([0.33, 0.56, 0.34, 0.34])
            top = 0.0
            for method, (freqs, dos) in insets[name].items():
                freqs, dos = np.asarray(freqs), np.asarray(dos)
                inset.plot(freqs, dos, lw=0.8, label=method, color=colours[method])
                visible = freqs[dos > 1e-3 * dos.max()] if dos.size and dos.max() > 0 else freqs
                top = max(top, float(visible.max()) if visible.size else 0.0)
            inset.set_xlim(0, inset_fmax or 1.1 * top or None)
            inset.set_xlabel('ν (THz)', fontsize='xx-small', labelpad=1)
            inset.tick_params(labelsize='xx-small', pad=1)
            inset.set_yticks([])
    for ax in axes[len(curves):]:
        ax.set_visible(False)
    # one legend for the figure, each method once
    legend = {}
    for ax in axes[: len(curves)]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    figure.legend(list(legend.values()), list(legend), loc='outside upper center', ncols=max(1, len(legend)))
    return _save(figure, path)


def vdos_overlay(
    path,
    spectra: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str = '',
    fmax: float | None = None,
) -> Path:
    """Several VDOS on one axis: ``spectra = {label: (frequencies_thz, dos)}``; ``fmax`` limits the axis (THz)."""
    if not spectra:
        raise ValueError('no spectra to plot')
    figure = _figure(5.0, 3.5)
    ax = figure.subplots()
    for label, (freqs, dos) in spectra.items():
        ax.plot(freqs, dos, lw=1.0, label=label)
    if fmax is not None:
        ax.set_xlim(0, fmax)
    ax.set_xlabel('frequency (THz)')
    ax.set_ylabel('VDOS (1/THz)')
    if title:
        ax.set_title(title)
    ax.legend(fontsize='small')
    return _save(figure, path)
