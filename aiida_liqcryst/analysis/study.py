"""The headline figures of a transfer study (plain functions: testable without AiiDA).

A study judges the liquid-only potentials by data they did not choose: the held-out reference melt (liquid),
the reference's E(V) curves of crystals they never saw (Fig. 2), and the reference's energies of the structures
their own searches found (Fig. 3). The targets are the paper's results on VASP; they stay fixed whatever a study
reaches (:data:`TARGETS`), and :func:`compare_with_targets` says which were met.
"""

from __future__ import annotations

import math

import numpy as np

from aiida_liqcryst.analysis.metrics import error_metrics

# The claim each headline tests and its target (issue 16; the search rows are the paper's own results).
TARGETS = {
    'liquid_energy_rmse_mev_atom': ('<=', 10.0),
    'liquid_force_rmse_ev_a': ('<=', 0.25),
    'eos_hp_max_abs_dv0_percent': ('<=', 3.0),
    'eos_hp_max_abs_de_mev_atom': ('<=', 15.0),
    'eos_hp_max_curve_rmse_mev_atom': ('<=', 10.0),
    'search_0gpa_best_si_coordination': ('<=', 4.5),  # tetrahedral: Si with 4 O neighbours
    'search_0gpa_known_polymorph_in_top5': ('==', True),
    'search_10gpa_best_space_group': ('==', 136),  # stishovite
    'relabel_pearson_r': ('>=', 0.987),
    'relabel_rmse_window_mev_atom': ('<=', 29.0),
    'relabel_rmse_all_mev_atom': ('<=', 59.0),
}

# enantiomorphic space-group pairs: a search may find either hand of quartz or cristobalite
ENANTIOMORPHS = {152: 154, 154: 152, 180: 181, 181: 180, 92: 96, 96: 92}


def low_pressure_space_groups() -> dict[int, list[str]]:
    """Space group -> the tetrahedral polymorphs of the library with it (or with its enantiomorph)."""
    from aiida_liqcryst.structures.polymorphs import POLYMORPHS

    groups: dict[int, list[str]] = {}
    for name, polymorph in POLYMORPHS.items():
        if polymorph.si_coordination == 4:
            for group in {polymorph.space_group, ENANTIOMORPHS.get(polymorph.space_group, polymorph.space_group)}:
                groups.setdefault(group, []).append(name)
    return groups


def _max_abs(rows: dict, column: str) -> float | None:
    values = [abs(row[column]) for row in rows.values() if row.get(column) is not None]
    return max(values) if values else None


def eos_headlines(table: dict) -> dict:
    """Largest |ΔV0| (%), |ΔE to the energy zero| (meV/atom) and curve RMSE (meV/atom) over the phases of one
    E(V) comparison table (an EOSScanWorkChain ``tables`` output: ``{'phases': {phase: row}}``)."""
    rows = table.get('phases') or table.get('rows') or {}
    worst_de = max(rows, key=lambda p: abs(rows[p]['relative_energy_error'] or 0.0)) if rows else None
    return {
        'max_abs_dv0_percent': _max_abs(rows, 'delta_v0_percent'),
        'max_abs_de_mev_atom': _max_abs(rows, 'relative_energy_error'),
        'max_curve_rmse_mev_atom': _max_abs(rows, 'curve_rmse'),
        'worst_de_phase': worst_de,
        'phases_without_fit': sorted(p for p, row in rows.items() if row.get('delta_v0_percent') is None),
    }


def space_group_number(value) -> int | None:
    """The international number of a ranking's space group: an int, or a label like ``'P4_2/mnm (136)'``."""
    import re

    if value is None or isinstance(value, int):
        return value
    match = re.search(r'\((\d+)\)\s*$', str(value))
    return int(match.group(1)) if match else None


def search_headlines(ranking: dict, top: int = 5) -> dict:
    """Space group and Si coordination of the best structure of a search, and the known low-pressure polymorphs
    among its ``top`` best (by space group)."""
    ranked = ranking.get('ranked') or []
    if not ranked:
        return {'best_space_group': None, 'best_si_coordination': None, 'known_low_pressure_in_top': []}
    rows = ranking['structures']
    best = rows[ranked[0]]
    groups = low_pressure_space_groups()
    # a space group alone is weak evidence (C2/c is common): the Si atoms must be tetrahedral too
    known = [groups[space_group_number(rows[k].get('space_group'))] for k in ranked[:top]
             if space_group_number(rows[k].get('space_group')) in groups
             and rows[k].get('si_coordination') is not None and abs(rows[k]['si_coordination'] - 4) <= 0.5]
    return {
        'best_space_group': space_group_number(best.get('space_group')),
        'best_space_group_label': best.get('space_group'),
        'best_si_coordination': best.get('si_coordination'),
        'top_space_groups': [rows[k].get('space_group') for k in ranked[:top]],
        'known_low_pressure_in_top': known,
    }


def pooled_relabel_metrics(searches: list[dict], window: float) -> dict:
    """Fig. 3 over all searches together: Pearson r and RMSE of potential vs reference energy per atom over every
    re-labeled structure, and RMSE within ``window`` eV/atom of each search's lowest potential enthalpy.

    :param searches: per search ``{'potential', 'reference', 'enthalpy'}`` arrays (eV/atom), as the
        ``relabel_energies`` output of an EvoSearchWorkChain.
    """
    pot, ref, inside = [], [], []
    for search in searches:
        enthalpy = np.asarray(search['enthalpy'], dtype=float)
        pot.append(np.asarray(search['potential'], dtype=float))
        ref.append(np.asarray(search['reference'], dtype=float))
        inside.append(enthalpy - enthalpy.min() <= window)
    if not pot:
        return {'n': 0}
    pot, ref, inside = np.concatenate(pot), np.concatenate(ref), np.concatenate(inside)
    everything = error_metrics(ref, pot)
    in_window = error_metrics(ref[inside], pot[inside]) if inside.sum() >= 2 else None
    return {
        'n': int(len(pot)),
        'n_window': int(inside.sum()),
        'window_ev_per_atom': float(window),
        'pearson_r': everything['pearson_r'],
        'rmse_all_mev_atom': 1e3 * everything['rmse'],
        'rmse_window_mev_atom': None if in_window is None else 1e3 * in_window['rmse'],
    }


def study_headlines(hp_summary: dict, lp_summary: dict | None, eos_tables: dict, searches: dict, window: float = 1.0) -> dict:
    """The headline figures of a study (the keys of ``docs/results/study.json`` but ``date`` and ``wall_minutes``).

    :param hp_summary: / ``lp_summary``: TrainEnsembleWorkChain summaries of the production models (held-out errors).
    :param eos_tables: ``{'HP': table, 'LP': table}`` E(V) comparison tables.
    :param searches: ``{pressure_gpa: {'ranking': dict, 'energies': {potential, reference, enthalpy} or None}}``.
    """
    def mev(value):
        return None if value is None else 1e3 * value

    headlines = {
        'liquid_energy_rmse_mev_atom': mev(hp_summary.get('rmse_e_holdout_mean')),
        'liquid_force_rmse_ev_a': hp_summary.get('rmse_f_holdout_mean'),
        'liquid_lp_energy_rmse_mev_atom': mev((lp_summary or {}).get('rmse_e_holdout_mean')),
        'liquid_lp_force_rmse_ev_a': (lp_summary or {}).get('rmse_f_holdout_mean'),
    }
    for label in ('HP', 'LP'):
        eos = eos_headlines(eos_tables[label]) if label in eos_tables else {}
        headlines[f'eos_{label.lower()}_max_abs_dv0_percent'] = eos.get('max_abs_dv0_percent')
        headlines[f'eos_{label.lower()}_max_abs_de_mev_atom'] = eos.get('max_abs_de_mev_atom')
        headlines[f'eos_{label.lower()}_max_curve_rmse_mev_atom'] = eos.get('max_curve_rmse_mev_atom')
        headlines[f'eos_{label.lower()}_worst_de_phase'] = eos.get('worst_de_phase')
    for pressure, search in sorted(searches.items()):
        found = search_headlines(search['ranking'])
        key = f'search_{pressure:g}gpa'
        headlines[f'{key}_best_space_group'] = found['best_space_group']
        headlines[f'{key}_best_si_coordination'] = found['best_si_coordination']
        headlines[f'{key}_top_space_groups'] = found.get('top_space_groups', [])
        if math.isclose(pressure, 0.0):
            headlines[f'{key}_known_polymorph_in_top5'] = bool(found['known_low_pressure_in_top'])
    relabel = pooled_relabel_metrics([s['energies'] for s in searches.values() if s.get('energies')], window)
    headlines['relabel_pearson_r'] = relabel.get('pearson_r')
    headlines['relabel_rmse_window_mev_atom'] = relabel.get('rmse_window_mev_atom')
    headlines['relabel_rmse_all_mev_atom'] = relabel.get('rmse_all_mev_atom')
    headlines['relabel_structures'] = relabel.get('n')
    return headlines


def compare_with_targets(headlines: dict) -> dict:
    """Per target: the measured value, the target and whether it was met (None where nothing was measured)."""
    result = {}
    for key, (op, target) in TARGETS.items():
        value = headlines.get(key)
        if value is None:
            met = None
        elif op == '<=':
            met = value <= target
        elif op == '>=':
            met = value >= target
        else:
            met = value == target
        result[key] = {'value': value, 'target': f'{op} {target}', 'met': met}
    return result


def errors_by_condition(conditions: list, energy_reference, energy_predicted, forces_reference, forces_predicted,
                        natoms: list[int]) -> list[dict]:
    """Held-out errors per condition (e.g. density and temperature of the reference MD that made each frame).

    :param conditions: one hashable label per frame, in the frames' order.
    :param energy_reference: per-frame energies per atom (eV/atom), the same order; ``energy_predicted`` likewise.
    :param forces_reference: per-atom force rows (sum(natoms), 3) in frame order; ``forces_predicted`` likewise.
    :param natoms: atoms per frame.
    :returns: one row per condition (in order of first appearance): ``condition``, ``nframes``,
        ``rmse_e_mev_atom``, ``rmse_f_ev_a``, ``force_rms_ev_a`` (the reference forces' own RMS, for scale).
    """
    energy_error = np.asarray(energy_predicted, float) - np.asarray(energy_reference, float)
    forces_reference = np.asarray(forces_reference, float).reshape(-1, 3)
    force_error = np.asarray(forces_predicted, float).reshape(-1, 3) - forces_reference
    if not len(conditions) == len(energy_error) == len(natoms) or sum(natoms) != len(force_error):
        raise ValueError(f'{len(conditions)} conditions, {len(energy_error)} energies, {len(natoms)} frames of '
                         f'{sum(natoms)} atoms and {len(force_error)} force rows do not match')
    starts = np.concatenate([[0], np.cumsum(natoms)])
    rows = {}
    for index, condition in enumerate(conditions):
        row = rows.setdefault(condition, {'e': [], 'f': [], 'ref': []})
        row['e'].append(energy_error[index])
        row['f'].append(force_error[starts[index]:starts[index + 1]])
        row['ref'].append(forces_reference[starts[index]:starts[index + 1]])
    return [{'condition': condition, 'nframes': len(row['e']),
             'rmse_e_mev_atom': 1e3 * float(np.sqrt(np.mean(np.square(row['e'])))),
             'rmse_f_ev_a': float(np.sqrt(np.mean(np.square(np.concatenate(row['f']))))),
             'force_rms_ev_a': float(np.sqrt(np.mean(np.square(np.concatenate(row['ref'])))))}
            for condition, row in rows.items()]
