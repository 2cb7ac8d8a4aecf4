"""ExploreMDWorkChain: MD with a DeePMD ensemble over structures x conditions, then candidate selection."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction

from aiida_liqcryst.calculations.explore_md import (
    CODE_HINT,
    MIN_MODELS,
    PLUGIN,
    ensemble_type_map,
    potentials_error,
    structure_error,
)
from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
from aiida_liqcryst.exploration import model_deviation, selection
from aiida_liqcryst.exploration.lammps_input import Condition, conditions_error
from aiida_liqcryst.validators import code_validator
from aiida_liqcryst.workflows.explore_md_base import ExploreMDBaseWorkChain


def _trajectory_atoms(trajectory, index: int):
    from ase import Atoms

    _, _, cell, symbols, positions, _ = trajectory.get_step_data(index)
    return Atoms(symbols=symbols, positions=positions, cell=cell, pbc=True)


def validate_safe_distance_ratio(value, _):
    if value is not None and not 0 <= value.value < 1.5:
        return f'`safe_distance_ratio` must be in [0, 1.5) (a fraction of the covalent-radius sum), got {value.value}'
    return None


@calcfunction
def select_candidates(
    eps_lo: orm.Float, eps_hi: orm.Float, max_candidates: orm.Int, selection_method: orm.Str, seed: orm.Int,
    conditions: orm.List, runs: orm.Dict, safe_distance_ratio: orm.Float | None = None, **md_outputs,
):
    """Classify every MD frame by its force model deviation and pick at most ``max_candidates`` candidates.

    :param conditions: the condition dicts, indexed by ``runs[k]['condition']``.
    :param runs: per run ``k``: ``condition`` (index), ``structure`` (label), ``truncated`` (the MD blew up).
    :param md_outputs: ``trajectory_<k>`` (TrajectoryData) and ``model_deviation_<k>`` (ArrayData) per run.
    :returns: ``candidate_<i>`` StructureData (extras: condition, condition_index, structure, run, frame_index,
        step, max_devi_f) and ``statistics``: ``conditions`` -> per condition counts, fractions and the
        10/50/90 percentiles of max_devi_f over all its runs; ``total``; the trust levels and selection.
    """
    lo, hi = eps_lo.value, eps_hi.value
    condition_list = conditions.get_list()
    run_info = runs.get_dict()

    pool = []  # (run key, frame index, max_devi_f) of every candidate frame
    per_condition: dict[int, dict] = {}
    all_devi = []
    for key in sorted(run_info, key=int):
        info = run_info[key]
        devi = md_outputs[f'model_deviation_{key}'].get_array('max_devi_f')
        labels = model_deviation.classify(devi, lo, hi)
        group = per_condition.setdefault(int(info['condition']), {'devi': [], 'runs': 0, 'truncated_runs': 0})
        group['devi'].append(devi)
        group['runs'] += 1
        group['truncated_runs'] += int(bool(info.get('truncated')))
        all_devi.append(devi)
        ratio = safe_distance_ratio.value if safe_distance_ratio is not None else 0.0
        for i in np.flatnonzero(labels == 'candidate'):
            if ratio > 0 and selection.too_close(_trajectory_atoms(md_outputs[f'trajectory_{key}'], int(i)), ratio):
                group['too_close'] = group.get('too_close', 0) + 1  # overlapping atoms: never labeled
                continue
            pool.append((key, int(i), float(devi[i])))

    method = selection_method.value
    features = None
    if method == 'fps' and pool:
        elements = sorted({s for key in run_info for s in md_outputs[f'trajectory_{key}'].symbols})
        features = [
            selection.partial_rdf_fingerprint(_trajectory_atoms(md_outputs[f'trajectory_{key}'], i), elements)
            for key, i, _ in pool
        ]
    # The cap is shared among the conditions in proportion to their candidates, then each condition picks its
    # share (FPS or random) among its own frames: one easy, diverse condition cannot take every label.
    groups: dict[int, list[int]] = {}
    for index, (key, _, _) in enumerate(pool):
        groups.setdefault(int(run_info[key]['condition']), []).append(index)
    order = sorted(groups)
    chosen = []
    for condition, quota in zip(order, selection.quotas([len(groups[c]) for c in order], max_candidates.value)):
        members = groups[condition]
        picked = selection.select(
            len(members), quota, method, seed.value + condition,
            [features[i] for i in members] if features is not None else None,
            np.array([pool[i][2] for i in members]),
        )
        chosen += [members[i] for i in picked]
    chosen.sort()

    outputs = {}
    selected_per_condition: dict[int, int] = {}
    for rank, index in enumerate(chosen):
        key, frame, devi = pool[index]
        info = run_info[key]
        trajectory = md_outputs[f'trajectory_{key}']
        structure = trajectory.get_step_structure(frame)
        extras = {
            'condition': condition_list[int(info['condition'])],
            'condition_index': int(info['condition']),
            'structure': info['structure'],
            'run': int(key),
            'frame_index': frame,
            'step': int(trajectory.get_stepids()[frame]),
            'max_devi_f': devi,
        }
        structure.base.extras.set_many(extras)
        outputs[f'candidate_{rank}'] = structure
        selected_per_condition[int(info['condition'])] = selected_per_condition.get(int(info['condition']), 0) + 1

    stats_conditions = {}
    for index in range(len(condition_list)):
        # a condition whose MDs all gave no frames stays listed, with 0 frames (so it never looks converged)
        group = per_condition.get(index, {'devi': [np.zeros(0)], 'runs': 0, 'truncated_runs': 0})
        values = np.concatenate(group['devi'])
        stats = model_deviation.summarize(values, lo, hi)
        stats.update(
            condition=condition_list[index], runs=group['runs'], truncated_runs=group['truncated_runs'],
            selected=selected_per_condition.get(index, 0), too_close=group.get('too_close', 0),
        )
        stats_conditions[f'condition_{index}'] = stats
    total = model_deviation.summarize(np.concatenate(all_devi), lo, hi)
    total['selected'] = len(chosen)
    total['too_close'] = sum(group.get('too_close', 0) for group in per_condition.values())
    outputs['statistics'] = orm.Dict(
        {'eps_lo': lo, 'eps_hi': hi, 'selection': method, 'max_candidates': max_candidates.value,
         'conditions': stats_conditions, 'total': total}
    )
    return outputs


def validate_conditions(value, _):
    if value is None:
        return None
    error = conditions_error(value.get_list())
    return f'`conditions`: {error}' if error else None


def validate_selection(value, _):
    if value is not None and value.value not in selection.METHODS:
        return f'`selection` must be one of {selection.METHODS}, got {value.value!r}'
    return None


def validate_max_candidates(value, _):
    if value is not None and value.value < 0:
        return f'`max_candidates` must be >= 0, got {value.value}'
    return None


def validate_seed(value, _):
    if value is not None and value.value < 0:
        return f'`seed` (of the candidate selection) must be an integer >= 0, got {value.value}'
    return None


def validate_inputs(inputs, ctx):
    if 'eps_lo' in inputs and 'eps_hi' in inputs and not 0 <= inputs['eps_lo'].value < inputs['eps_hi'].value:
        return (
            f'trust levels must satisfy 0 <= `eps_lo` < `eps_hi`, got eps_lo={inputs["eps_lo"].value}, '
            f'eps_hi={inputs["eps_hi"].value} (eV/Å)'
        )
    if 'potentials' in ctx:
        potentials = inputs.get('potentials', {})
        if (error := potentials_error(potentials)) is not None:
            return error
        type_map = ensemble_type_map(potentials)
        if 'structures' in ctx:
            structures = inputs.get('structures', {})
            if not structures:
                return '`structures`: give at least one starting structure'
            for label, structure in structures.items():
                if (error := structure_error(structure, type_map, name=f'structures.{label}')) is not None:
                    return error
    return None


class ExploreMDWorkChain(WorkChain):
    """Exploration stage of active learning: where does the ensemble disagree?

    One :class:`ExploreMDBaseWorkChain` per (structure, condition), all at once. Every stored frame is
    classified by its force model deviation ``max_devi_f``: accurate (< ``eps_lo``), candidate, failed
    (>= ``eps_hi``). Frames of an MD that blew up still count. At most ``max_candidates`` candidates are
    returned as structures to label, picked at random (seeded) or by farthest point sampling on partial RDFs.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, validator=code_validator(PLUGIN, what=CODE_HINT),
                   help='LAMMPS with the DeePMD plugin (`lmp`).')
        spec.input_namespace(
            'potentials', valid_type=DeepPotentialData, dynamic=True,
            help=f'The ensemble: at least {MIN_MODELS} frozen DeePMD models sharing one type_map.',
        )
        spec.input_namespace(
            'structures', valid_type=orm.StructureData, dynamic=True,
            help='Starting structures (3D periodic, elements in the type_map); one MD per structure and condition.',
        )
        spec.input(
            'conditions', valid_type=orm.List, validator=validate_conditions,
            help='MD conditions: dicts with temperature (K), pressure (GPa), ensemble (npt|nvt), steps, timestep (ps), '
            'dump_every, thermo_every, seed (see exploration.lammps_input.Condition).',
        )
        spec.input('eps_lo', valid_type=orm.Float, default=lambda: orm.Float(0.15),
                   help='Lower trust level of max_devi_f (eV/Å): below it a frame is accurate.')
        spec.input('eps_hi', valid_type=orm.Float, default=lambda: orm.Float(0.30),
                   help='Upper trust level of max_devi_f (eV/Å): at or above it a frame is failed (not labeled).')
        spec.input('max_candidates', valid_type=orm.Int, default=lambda: orm.Int(50), validator=validate_max_candidates,
                   help='At most this many candidates are returned (over all runs).')
        spec.input('selection', valid_type=orm.Str, default=lambda: orm.Str('random'), validator=validate_selection,
                   help='How candidates are picked when there are more than `max_candidates`: random | fps.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), validator=validate_seed,
                   help='Seed of the random selection (>= 0).')
        spec.input('safe_distance_ratio', valid_type=orm.Float, default=lambda: orm.Float(0.75),
                   validator=validate_safe_distance_ratio,
                   help='A candidate frame with two atoms closer than this times the sum of their covalent radii is '
                        'unphysical (overlapping atoms): counted as `too_close` and never labeled. 0 disables.')
        spec.input('max_iterations', valid_type=orm.Int, default=lambda: orm.Int(3),
                   help='Runs per MD including the restarts with a halved timestep after a blow-up.')
        spec.input('options', valid_type=orm.Dict, required=False,
                   help='`metadata.options` of every ExploreMDCalculation (resources, walltime, ...).')
        spec.inputs.validator = validate_inputs

        spec.outline(cls.run_md, cls.inspect_md, cls.select)

        spec.output_namespace('candidates', valid_type=orm.StructureData, dynamic=True,
                              help='Selected candidate frames, `candidate_<i>` (extras: condition, frame_index, max_devi_f, ...).')
        spec.output('statistics', valid_type=orm.Dict,
                    help='Per condition (`conditions.condition_<j>`) and in total: frames, accurate/candidate/failed '
                    'counts and fractions, max_devi_f percentiles 10/50/90, runs, truncated_runs, selected.')
        spec.exit_code(410, 'ERROR_NO_MD_OUTPUT', message='no MD returned frames: {detail}')

    def run_md(self):
        conditions = self.inputs.conditions.get_list()
        options = self.inputs.options.get_dict() if 'options' in self.inputs else {}
        self.ctx.runs = {}
        index = 0
        for label in sorted(self.inputs.structures):
            for j, condition in enumerate(conditions):
                inputs = {
                    'md': {
                        'code': self.inputs.code,
                        'structure': self.inputs.structures[label],
                        'potentials': dict(self.inputs.potentials),
                        'parameters': orm.Dict(Condition.from_dict(condition).to_dict()),
                        'metadata': {'options': options},
                    },
                    'max_iterations': self.inputs.max_iterations,
                    'metadata': {'call_link_label': f'md_{index}'},
                }
                node = self.submit(ExploreMDBaseWorkChain, **inputs)
                self.ctx.runs[str(index)] = {'condition': j, 'structure': label}
                self.to_context(**{f'md_{index}': node})
                index += 1
        self.report(f'launched {index} MD runs: {len(self.inputs.structures)} structures x {len(conditions)} conditions')

    def inspect_md(self):
        self.ctx.md_outputs = {}
        usable = {}
        problems = []
        for key, info in self.ctx.runs.items():
            node = self.ctx[f'md_{key}']
            if 'trajectory' in node.outputs and 'model_deviation' in node.outputs:
                self.ctx.md_outputs[f'trajectory_{key}'] = node.outputs.trajectory
                self.ctx.md_outputs[f'model_deviation_{key}'] = node.outputs.model_deviation
                usable[key] = {**info, 'truncated': not node.is_finished_ok}
                if not node.is_finished_ok:
                    self.report(f'MD {key} <{node.pk}> ended early ({node.exit_message}); its frames still count')
            else:
                problems.append(f'MD {key} <{node.pk}> exit {node.exit_status}: {node.exit_message}')
                self.report(f'{problems[-1]}; it gave no frames')
        if not usable:
            return self.exit_codes.ERROR_NO_MD_OUTPUT.format(detail='; '.join(problems))
        self.ctx.usable_runs = usable
        return None

    def select(self):
        result = select_candidates(
            eps_lo=self.inputs.eps_lo, eps_hi=self.inputs.eps_hi, max_candidates=self.inputs.max_candidates,
            selection_method=self.inputs.selection, seed=self.inputs.seed, conditions=self.inputs.conditions,
            runs=orm.Dict(self.ctx.usable_runs), safe_distance_ratio=self.inputs.safe_distance_ratio,
            metadata={'call_link_label': 'select_candidates'},
            **self.ctx.md_outputs,
        )
        statistics = result.pop('statistics')
        self.out('statistics', statistics)
        for label, node in result.items():
            self.out(f'candidates.{label}', node)
        stats = statistics.get_dict()
        for name, c in stats['conditions'].items():
            cond = c['condition']
            self.report(
                f'{name} ({cond.get("ensemble", "npt")} {cond["temperature"]} K {cond.get("pressure", 0)} GPa): '
                f'{c["frames"]} frames, accurate {c["accurate_fraction"]:.2f} candidate {c["candidate_fraction"]:.2f} '
                f'failed {c["failed_fraction"]:.2f}; {c.get("too_close", 0)} with overlapping atoms; {c["selected"]} selected'
            )
        self.report(f'{stats["total"]["candidate"]} candidate frames, {len(result)} selected (cap {self.inputs.max_candidates.value})')
