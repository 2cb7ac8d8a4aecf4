"""ActiveLoopWorkChain: DP-GEN-style active learning on the melt only (train -> explore -> label -> repeat)."""

from __future__ import annotations

import re

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.calcfunctions import random_melt
from aiida_liqcryst.deepmd.calcfunctions import merge_datasets
from aiida_liqcryst.protocols import ProtocolMixin, recursive_merge
from aiida_liqcryst.workflows.train_ensemble import SUMMARY_KEYS

TrainEnsembleWorkChain = WorkflowFactory('liqcryst.train_ensemble')
ExploreMDWorkChain = WorkflowFactory('liqcryst.explore_md')
LabelWorkChain = WorkflowFactory('liqcryst.label')
PremeltWorkChain = WorkflowFactory('liqcryst.premelt')

# call link labels of the loop's sub-processes (readers import them)
INITIAL_LABELS_LINK = 'initial_labels'
PREMELT_LINK = 'premelt'
PRODUCTION_LINK = 'production'
# per iteration: .format(iteration=i)
TRAIN_LINK = 'train_{iteration}'
EXPLORE_LINK = 'explore_{iteration}'
LABEL_LINK = 'label_{iteration}'

STAGE_KEYS = {'temperatures', 'pressures', 'steps'}
STAGE_DEFAULTS = {'ensemble': 'npt', 'timestep': 0.001, 'dump_every': 10, 'thermo_every': 10}


def stage_error(stage) -> str | None:
    """Why one exploration stage of the schedule is invalid, or None."""
    if not isinstance(stage, dict):
        return f'each stage must be a dict, got {stage!r}'
    missing = STAGE_KEYS - set(stage)
    if missing:
        return f'stage {stage} lacks {sorted(missing)}'
    unknown = set(stage) - STAGE_KEYS - set(STAGE_DEFAULTS)
    if unknown:
        return f'stage {stage} has unknown keys {sorted(unknown)}; allowed: {sorted(STAGE_KEYS | set(STAGE_DEFAULTS))}'
    if not stage['temperatures'] or any(t <= 0 for t in stage['temperatures']):
        return f'temperatures must be a non-empty list of positive values (K), got {stage["temperatures"]}'
    if not stage['pressures'] or any(p < -10 or p > 500 for p in stage['pressures']):
        return f'pressures must be a non-empty list in GPa within [-10, 500], got {stage["pressures"]}'
    if int(stage['steps']) <= 0:
        return f'steps must be positive, got {stage["steps"]}'
    return None


def validate_schedule(value, _):
    stages = value.get_list()
    if not stages:
        return '`schedule` needs at least one exploration stage'
    for stage in stages:
        if (error := stage_error(stage)) is not None:
            return f'`schedule`: {error}'
    return None


def conditions_for(stage: dict, seed: int) -> list[dict]:
    """The (T, P) grid of one schedule stage as ExploreMD conditions (one MD per grid point)."""
    stage = {**STAGE_DEFAULTS, **stage}
    return [
        {
            'temperature': float(t),
            'pressure': float(p),
            'ensemble': stage['ensemble'],
            'steps': int(stage['steps']),
            'timestep': float(stage['timestep']),
            'dump_every': int(stage['dump_every']),
            'thermo_every': int(stage['thermo_every']),
            'seed': seed + i,
        }
        for i, (t, p) in enumerate((t, p) for p in stage['pressures'] for t in stage['temperatures'])
    ]


def densities_of(density) -> list[float]:
    """The packing densities of the ``density`` input (a Float or a List of them)."""
    return [float(d) for d in density.get_list()] if isinstance(density, orm.List) else [float(density.value)]


def validate_density(value, _):
    try:
        densities = densities_of(value)
    except (TypeError, ValueError):
        return f'`density` must be a number or a list of numbers (g/cm^3), got {value.get_list()}'
    if not densities or any(d <= 0 or d > 20 for d in densities):
        return f'`density` must be positive (g/cm^3, at most 20), one value or a non-empty list; got {densities}'
    return None


def validate_inputs(inputs, ctx):
    if 'initial_dataset' not in inputs and 'initial_label' not in inputs:
        return 'give either `initial_dataset` or the `initial_label` inputs that label the random melt packings'
    if 'premelt' in inputs and 'parameters' in inputs['premelt'] and 'temperature' not in inputs['premelt']['parameters'].get_dict():
        return '`premelt.parameters` need the `temperature` of the pre-melt (the initial MD\'s, as a rule)'
    if 'max_iterations' in inputs and inputs['max_iterations'].value < 1:
        return '`max_iterations` must be >= 1'
    if 'accurate_threshold' in inputs and not 0 < inputs['accurate_threshold'].value <= 1:
        return '`accurate_threshold` must be in (0, 1]'
    # (a parent that sets `train.holdout` itself excludes the port: then it is not ours to check)
    holdout_port = ctx is None or 'holdout' in ctx.get('train', {})
    if 'trust_from_holdout' in inputs and 'holdout' not in inputs.get('train', {}) and holdout_port:
        return '`trust_from_holdout` sets the trust levels from the held-out error: give `train.holdout` too'
    if 'reuse_parameters' in inputs and not ('reuse_models' in inputs and inputs['reuse_models'].value):
        return '`reuse_parameters` applies only to fine-tuning: set `reuse_models` to True or leave it out'
    parameters = inputs.get('train', {}).get('train', {}).get('train', {}).get('parameters')
    if 'reuse_parameters' in inputs and parameters is not None:
        # checked now, not when the second iteration submits its training
        from aiida_liqcryst.deepmd.calculations.train import check_parameters, input_backend

        merged = recursive_merge(parameters.get_dict(), inputs['reuse_parameters'].get_dict())
        backend = input_backend(inputs['train']['train']['train'])
        if (error := check_parameters(merged, {}, {}, backend)) is not None:
            return f'`reuse_parameters` merged over `train.train.train.parameters`: {error}'
    return None


REUSE_SECTIONS = ('learning_rate', 'loss', 'training')


def validate_trust_from_holdout(value, _):
    if value is None:
        return None
    factors = value.get_dict()
    if set(factors) != {'lo', 'hi'}:
        return f'`trust_from_holdout` needs exactly the keys lo and hi (factors of the held-out force RMSE), got {sorted(factors)}'
    try:
        lo, hi = float(factors['lo']), float(factors['hi'])
    except (TypeError, ValueError):
        return f'`trust_from_holdout`: lo and hi must be numbers, got {factors}'
    if not 0 < lo < hi:
        return f'`trust_from_holdout` must satisfy 0 < lo < hi, got lo={lo}, hi={hi}'
    return None


def validate_reuse_parameters(value, _):
    unknown = set(value.get_dict()) - set(REUSE_SECTIONS)
    if unknown:
        return f'`reuse_parameters`: unknown sections {sorted(unknown)}; allowed: {list(REUSE_SECTIONS)}'
    for section, settings in value.get_dict().items():
        if not isinstance(settings, dict):
            return f'`reuse_parameters`: section `{section}` must be a dict of deepmd-kit settings, got {settings!r}'
    return None  # the values: check_parameters on the merged parameters (validate_inputs)


@calcfunction
def tabulate_iterations(stop_reason: orm.Str, **nodes):
    """The per-iteration table: dataset size, fractions per condition, labels added, RMSEs, as one Dict.

    Keys of ``nodes``: ``summary_<i>`` (ensemble summary), ``exploration_<i>`` (ExploreMD statistics),
    ``labels_<i>`` (label statistics, absent when nothing was labeled), ``size_<i>`` (dataset frames at training).
    """
    rows = {}
    for key, node in nodes.items():
        kind, index = key.rsplit('_', 1)
        row = rows.setdefault(int(index), {'iteration': int(index), 'labels_added': 0})
        if kind == 'summary':
            s = node.get_dict()
            for name in SUMMARY_KEYS:
                if f'{name}_mean' in s:
                    row[name] = s[f'{name}_mean']
        elif kind == 'exploration':
            row['conditions'] = node.get_dict().get('conditions', node.get_dict())
            for name in ('eps_lo', 'eps_hi'):  # the trust levels this exploration used
                if name in node.get_dict():
                    row[name] = node.get_dict()[name]
        elif kind == 'labels':
            row['labels_added'] = node.get_dict().get('n_labeled', 0)
        elif kind == 'size':
            row['dataset_size'] = node.value
    return {'iterations': orm.List([rows[i] for i in sorted(rows)]), 'stop_reason': orm.Str(stop_reason.value)}


def convergence_reason(accurate: list[float], candidates: int, quiet_iterations: int, threshold: float, patience: int,
                       at_last_stage: bool, failed: list[float] | None = None) -> str | None:
    """Why the loop stops after an exploration (converged, or stalled), or None to go on.

    :param accurate: accurate fraction of each condition explored; ``failed``: the fraction beyond ``eps_hi``. No
        candidates while more than ``1 - threshold`` of a condition's frames failed is not convergence: the models
        disagree everywhere they are uncertain, and there is nothing to label (the window is too narrow for them).
    :param candidates: candidates found; ``quiet_iterations``: consecutive explorations without any, this one included.
    :param at_last_stage: whether this exploration ran the schedule's last stage: before it, the loop goes on
        whatever it finds (the later stages, e.g. longer MD, are part of what is to be explored).
    """
    if not at_last_stage:
        return None
    if accurate and min(accurate) >= threshold:
        return f'converged: accurate fraction >= {threshold} in every condition'
    if candidates == 0 and quiet_iterations >= patience:
        if failed and max(failed) > 1 - threshold:
            return (f'stalled: no candidates in {quiet_iterations} iteration(s), but {max(failed):.0%} of the frames of a '
                    'condition lie beyond eps_hi: NOT converged')
        return f'converged: no candidates in {quiet_iterations} iteration(s)'
    return None


def training_folders(potentials: dict) -> dict:
    """The remote folder (checkpoint) of the training that made each potential: ``init_models`` for fine-tuning."""
    return {key: potential.creator.outputs.remote_folder for key, potential in potentials.items()}


def summary_errors(summary: dict) -> str:
    """An ensemble summary's errors in words: over the training data and, when tested, on the held-out frames."""
    nan = float('nan')
    line = (f'RMSE over the training data: energy {1e3 * summary.get("rmse_e_dataset_mean", nan):.1f} meV/atom, '
            f'force {summary.get("rmse_f_dataset_mean", nan):.3f} eV/Å')
    if 'rmse_f_holdout_mean' in summary:
        line += (f'; held-out: energy {1e3 * summary["rmse_e_holdout_mean"]:.1f} meV/atom, '
                 f'force {summary["rmse_f_holdout_mean"]:.3f} eV/Å')
    return line


def equilibrated_starts(initial_labels: orm.WorkflowNode, packings: dict) -> dict:
    """Where exploration MD starts: per packing, the last frame of the reference MD that labeled it.

    When the initial labels are short MD runs of the reference engine (the oracle's ``md`` setting), their last
    frames are equilibrated melts; a random packing itself has atoms at the packing's minimum distance, and MD
    started there with a young model spends its first steps in unphysical, high-energy configurations that the
    candidate pick then favours. Packings without MD frames (single-point labels) start as they are.
    """
    last = {}
    for calc in initial_labels.called_descendants:
        if not isinstance(calc, orm.CalcJobNode) or 'structures' not in calc.outputs:
            continue
        for key, structure in calc.outputs.structures.items():
            match = re.fullmatch(r'(.+)_f(\d+)', key)
            if match and match.group(1) in packings and int(match.group(2)) >= last.get(match.group(1), (-1, None))[0]:
                last[match.group(1)] = (int(match.group(2)), structure)
    return {key: last[key][1] if key in last else structure for key, structure in packings.items()}


class ActiveLoopWorkChain(ProtocolMixin, WorkChain):
    """Liquid-only active learning: train an ensemble, explore the melt, label the uncertain frames, repeat.

    Nothing crystalline is given: the initial data are random dense packings labeled by the reference
    engine. Each iteration trains ``len(train.seeds)`` models on the current dataset, runs MD of the melt
    with all of them over the (T, P) grid of the iteration's schedule stage, takes frames whose force model
    deviation lies in the trust window as candidates, labels them and merges them into the dataset. Once it has
    reached the schedule's last stage, it stops when every condition is accurate (fraction >=
    ``accurate_threshold``) or when no candidates appeared for ``patience`` iterations; in any case at
    ``max_iterations``. The reason is the ``stop_reason`` output.
    """

    _protocol_file = 'active_loop'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('composition', valid_type=orm.Dict, help='Atoms per formula unit, e.g. {"Si": 1, "O": 2}.')
        spec.input('formula_units', valid_type=orm.Int, help='Formula units per simulation cell (the paper: 114).')
        spec.input('density', valid_type=(orm.Float, orm.List), default=lambda: orm.Float(2.6), validator=validate_density,
                   help='Density of the random packings, g/cm^3: one value, or a list that the packings take in turn '
                        '(packing i gets density[i % len]), so that the initial data span the densities explored.')
        spec.input('min_distance', valid_type=orm.Float, default=lambda: orm.Float(1.5), help='Minimum distance in the packings, Å.')
        spec.input('number_of_structures', valid_type=orm.Int, default=lambda: orm.Int(4), help='Random melt packings to start from.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Seed of packings and MD velocities.')
        spec.input('initial_dataset', valid_type=orm.Data, required=False, help='Labeled data to start from instead of labeling the packings.')
        spec.expose_inputs(
            LabelWorkChain, namespace='initial_label', exclude=('structures',),
            namespace_options={'required': False, 'populate_defaults': False,
                               'help': 'Labeling of the random packings (e.g. oracle with short MD): the initial data.'},
        )
        spec.expose_inputs(
            PremeltWorkChain, namespace='premelt', exclude=('structures',),
            namespace_options={'required': False, 'populate_defaults': False,
                               'help': 'Melt the packings with a classical potential before the initial labels, so '
                                       'that the reference MD starts in the melt.'},
        )
        spec.expose_inputs(
            TrainEnsembleWorkChain, namespace='train', exclude=('train.train.datasets',),
            namespace_options={'help': 'Training of the ensemble, every iteration (datasets are set by the loop).'},
        )
        spec.expose_inputs(
            ExploreMDWorkChain, namespace='explore', exclude=('potentials', 'structures', 'conditions'),
            namespace_options={'help': 'Exploration: code, trust levels, candidate cap and pick (conditions come from `schedule`).'},
        )
        spec.expose_inputs(
            LabelWorkChain, namespace='label', exclude=('structures',),
            namespace_options={'help': 'Labeling of the candidates with the reference engine.'},
        )
        spec.input('schedule', valid_type=orm.List, validator=validate_schedule,
                   help='Exploration stages, one per iteration (the last repeats): dicts with temperatures (K), pressures (GPa), '
                        'steps, and optionally ensemble, timestep (ps), dump_every, thermo_every.')
        spec.input('accurate_threshold', valid_type=orm.Float, default=lambda: orm.Float(0.99),
                   help='Converged when the accurate fraction of every condition reaches this (at the last schedule stage).')
        spec.input('patience', valid_type=orm.Int, default=lambda: orm.Int(1),
                   help='Converged when no candidates were found in this many consecutive iterations (the last one at '
                        'the last schedule stage).')
        spec.input('max_iterations', valid_type=orm.Int, default=lambda: orm.Int(4), help='Upper bound on iterations.')
        spec.input('reuse_models', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='From the second iteration on, start each model from the weights of the same model of the '
                        'previous iteration (`dp train --init-model`, fine-tuning on the grown dataset) instead of '
                        'training from scratch.')
        spec.input('reuse_parameters', valid_type=orm.Dict, required=False, validator=validate_reuse_parameters,
                   help='With `reuse_models`: deepmd-kit input sections (learning_rate, loss, training) merged over the '
                        'training parameters when a model starts from previous weights, like DP-GEN\'s '
                        '`training_reuse_*` keys: fewer steps from a lower learning rate, e.g. '
                        '{"training": {"numb_steps": 1000}, "learning_rate": {"start_lr": 0.001}}.')
        spec.input('trust_from_holdout', valid_type=orm.Dict, required=False, validator=validate_trust_from_holdout,
                   help='Trust levels set from the measured error instead of fixed `explore.eps_lo/eps_hi`: each '
                        'iteration, eps_lo = lo x and eps_hi = hi x the ensemble\'s held-out force RMSE (eV/Å), e.g. '
                        '{"lo": 1.0, "hi": 3.0}: a frame whose model deviation stays within the error the models '
                        'show on reference frames is as well described as they can be now. Needs `train.holdout`.')
        spec.expose_inputs(
            TrainEnsembleWorkChain, namespace='production', exclude=('train.train.datasets',),
            namespace_options={'required': False, 'populate_defaults': False,
                               'help': 'A final production training on the final dataset after the loop (as DP-GEN users '
                                       'do): usually one model, trained longer and compressed for the crystal steps. '
                                       'Tested on `train.holdout` when `production.holdout` is not given.'},
        )
        spec.input('production_reuse', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='Start each production model from the weights of the same model of the final ensemble '
                        '(`dp train --init-model`) instead of from scratch.')
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            cls.make_structures,
            if_(cls.needs_initial_labels)(
                if_(cls.should_premelt)(cls.run_premelt, cls.inspect_premelt),
                cls.label_initial,
                cls.inspect_initial,
            ),
            while_(cls.should_iterate)(
                cls.train,
                cls.inspect_train,
                cls.explore,
                cls.inspect_explore,
                if_(cls.has_candidates)(cls.label_candidates, cls.inspect_labels),
                cls.end_iteration,
            ),
            if_(cls.has_production)(cls.train_production, cls.inspect_production),
            cls.results,
        )
        spec.output_namespace('potentials', valid_type=orm.Data, dynamic=True, help='The final ensemble.')
        spec.output('dataset', valid_type=orm.Data, help='The final training dataset (initial data + every label added).')
        spec.output('iterations', valid_type=orm.List, help='Per-iteration table (dataset size, fractions per condition, labels, RMSEs).')
        spec.output('stop_reason', valid_type=orm.Str, help='Why the loop stopped.')
        spec.output_namespace('production', valid_type=orm.Data, dynamic=True,
                              help='With `production`: the production models (`model_<i>`) and their `summary` '
                                   '(training and held-out errors).')
        spec.exit_code(405, 'ERROR_PREMELT', message='the classical pre-melt of the packings failed: {message}')
        spec.exit_code(410, 'ERROR_INITIAL_LABELS', message='labeling the initial melt packings failed: {message}')
        spec.exit_code(420, 'ERROR_TRAINING', message='training the ensemble failed in iteration {iteration}')
        spec.exit_code(430, 'ERROR_EXPLORATION', message='exploration failed in iteration {iteration}')
        spec.exit_code(440, 'ERROR_LABELING', message='labeling the candidates failed in iteration {iteration}')
        spec.exit_code(450, 'ERROR_PRODUCTION', message='the production training failed: {message}')

    @classmethod
    def get_builder_from_protocol(cls, codes: dict, composition: dict, engine: str = 'oracle', protocol=None,
                                  pressure_range: str = 'HP', overrides: dict | None = None, holdout=None):
        """A builder from a named protocol.

        :param codes: dict with the codes ``dp``, ``lmp`` and ``engine`` (the reference engine's code).
        :param pressure_range: ``'LP'`` explores P = 0 only; ``'HP'`` the protocol's pressure grid (0-70 GPa in the paper).
        :param holdout: held-out frames labeled by the reference (e.g. the output of ``liqcryst.reference_melt``): every
            iteration's ensemble and the production models are tested on them.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if pressure_range not in ('LP', 'HP'):
            raise ValueError(f'pressure_range must be "LP" or "HP", got {pressure_range!r}')
        type_map = sorted(composition)
        train = TrainEnsembleWorkChain.get_builder_from_protocol(
            codes['dp'], None, protocol=inputs['train']['protocol'], overrides=inputs['train'].get('overrides'),
            type_map=type_map,
        )
        builder = cls.get_builder()
        builder.composition = orm.Dict(composition)
        for key in ('formula_units', 'number_of_structures', 'seed', 'patience', 'max_iterations'):
            setattr(builder, key, orm.Int(inputs[key]))
        for key in ('min_distance', 'accurate_threshold'):
            setattr(builder, key, orm.Float(inputs[key]))
        density = inputs['density']
        if isinstance(density, dict):  # per pressure range: HP needs packings as dense as the melt at its highest pressure
            density = density[pressure_range]
        builder.density = orm.List([float(d) for d in density]) if isinstance(density, list) else orm.Float(density)
        builder.reuse_models = orm.Bool(inputs.get('reuse_models', False))
        if builder.reuse_models.value and inputs.get('reuse_parameters'):
            builder.reuse_parameters = orm.Dict(inputs['reuse_parameters'])
        builder.train = train._inputs(prune=True)  # the ensemble's own protocol: network, backend, seeds
        if holdout is not None:
            builder.train.holdout = holdout
        if 'production' in inputs:  # a final, longer training of the final dataset (from the ensemble's protocols)
            production = TrainEnsembleWorkChain.get_builder_from_protocol(
                codes['dp'], None, protocol=inputs['production']['protocol'],
                overrides=inputs['production'].get('overrides'), type_map=type_map,
            )
            builder.production = production._inputs(prune=True)
            builder.production_reuse = orm.Bool(inputs['production'].get('reuse', False))
        builder.schedule = orm.List(inputs['schedule'][pressure_range])
        if inputs.get('trust_from_holdout'):
            builder.trust_from_holdout = orm.Dict(inputs['trust_from_holdout'])
        explore = inputs['explore']
        builder.explore.code = codes['lmp']
        builder.explore.eps_lo = orm.Float(explore['eps_lo'])
        builder.explore.eps_hi = orm.Float(explore['eps_hi'])
        builder.explore.max_candidates = orm.Int(explore['max_candidates'])
        builder.explore.selection = orm.Str(explore['selection'])
        for namespace in ('label', 'initial_label'):  # the label work chain's own protocol, with this one's overrides
            settings = inputs[namespace]
            label = {'batch_size': settings.get('batch_size', 8)}
            if engine in settings.get('settings', {}):
                label['settings'] = {engine: settings['settings'][engine]}
            port = LabelWorkChain.get_builder_from_protocol(
                codes['engine'], None, engine, type_map, protocol=settings.get('protocol'), overrides=label)
            setattr(builder, namespace, port._inputs(prune=True))
        if inputs.get('premelt'):
            builder.premelt.code = codes['lmp']
            builder.premelt.potential = orm.Str(inputs['premelt']['potential'])
            builder.premelt.parameters = orm.Dict(inputs['premelt']['parameters'])
        return builder

    # -- steps ---------------------------------------------------------------------------------------------

    def setup(self):
        self.ctx.iteration = 0
        self.ctx.quiet_iterations = 0
        self.ctx.stop_reason = None
        self.ctx.table_nodes = {}
        if 'initial_dataset' in self.inputs:
            self.ctx.dataset = self.inputs.initial_dataset

    def make_structures(self):
        self.ctx.structures = {}
        densities = densities_of(self.inputs.density)
        for index in range(self.inputs.number_of_structures.value):
            density = self.inputs.density if len(densities) == 1 else orm.Float(densities[index % len(densities)])
            structure = random_melt(
                self.inputs.composition, self.inputs.formula_units, density, self.inputs.min_distance,
                orm.Int(self.inputs.seed.value + index),
            )
            self.ctx.structures[f'melt_{index}'] = structure
        self.report(f'{len(self.ctx.structures)} random melt packings of {self.inputs.formula_units.value} formula units '
                    f'at {", ".join(f"{d:g}" for d in densities)} g/cm^3')

    def needs_initial_labels(self):
        return 'dataset' not in self.ctx

    def should_premelt(self):
        return 'code' in self.inputs.get('premelt', {})

    def run_premelt(self):
        inputs = AttributeDict(self.exposed_inputs(PremeltWorkChain, namespace='premelt'))
        inputs.structures = self.ctx.structures
        inputs.metadata = {'call_link_label': PREMELT_LINK}
        return ToContext(premelt=self.submit(PremeltWorkChain, **inputs))

    def inspect_premelt(self):
        node = self.ctx.premelt
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_PREMELT.format(message=f'<{node.pk}> exit {node.exit_status}')
        self.ctx.structures = dict(node.outputs.structures)
        return None

    def label_initial(self):
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='initial_label'))
        inputs.structures = self.ctx.structures
        inputs.metadata = {'call_link_label': INITIAL_LABELS_LINK}
        return ToContext(initial_label=self.submit(LabelWorkChain, **inputs))

    def inspect_initial(self):
        node = self.ctx.initial_label
        if not node.is_finished_ok or 'dataset' not in node.outputs:
            return self.exit_codes.ERROR_INITIAL_LABELS.format(message=f'<{node.pk}> exit {node.exit_status}')
        self.ctx.dataset = node.outputs.dataset
        self.ctx.starts = equilibrated_starts(node, self.ctx.structures)
        from_md = sum(start.pk != self.ctx.structures[key].pk for key, start in self.ctx.starts.items())
        self.report(f'initial data: {self.ctx.dataset.nframes} labeled frames; exploration starts from the last reference '
                    f'MD frame of {from_md} of {len(self.ctx.starts)} packings')
        return None

    def should_iterate(self):
        if self.ctx.stop_reason is not None:
            return False
        if self.ctx.iteration >= self.inputs.max_iterations.value:
            self.ctx.stop_reason = f'max_iterations ({self.inputs.max_iterations.value}) reached: NOT converged'
            return False
        return True

    def train(self):
        inputs = AttributeDict(self.exposed_inputs(TrainEnsembleWorkChain, namespace='train'))
        inputs.train.train.datasets = {'data': self.ctx.dataset}
        if self.inputs.reuse_models.value and 'potentials' in self.ctx:
            # the remote folder of each previous model's training holds its checkpoint
            inputs.init_models = training_folders(self.ctx.potentials)
            if 'reuse_parameters' in self.inputs:
                parameters = recursive_merge(inputs.train.train.parameters.get_dict(), self.inputs.reuse_parameters.get_dict())
                inputs.train.train.parameters = orm.Dict(parameters)
        inputs.metadata = {'call_link_label': TRAIN_LINK.format(iteration=self.ctx.iteration)}
        self.ctx.table_nodes[f'size_{self.ctx.iteration}'] = orm.Int(self.ctx.dataset.nframes).store()
        return ToContext(ensemble=self.submit(TrainEnsembleWorkChain, **inputs))

    def inspect_train(self):
        node = self.ctx.ensemble
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TRAINING.format(iteration=self.ctx.iteration)
        self.ctx.potentials = dict(node.outputs.potentials.items())
        self.ctx.table_nodes[f'summary_{self.ctx.iteration}'] = node.outputs.summary
        self.report(f'iteration {self.ctx.iteration}: trained {len(self.ctx.potentials)} models on '
                    f'{self.ctx.dataset.nframes} frames; {summary_errors(node.outputs.summary.get_dict())}')
        return None

    def explore(self):
        stages = self.inputs.schedule.get_list()
        stage = stages[min(self.ctx.iteration, len(stages) - 1)]
        inputs = AttributeDict(self.exposed_inputs(ExploreMDWorkChain, namespace='explore'))
        inputs.potentials = self.ctx.potentials
        inputs.structures = self.ctx.get('starts', self.ctx.structures)
        inputs.conditions = orm.List(conditions_for(stage, self.inputs.seed.value + 1000 * self.ctx.iteration))
        if 'trust_from_holdout' in self.inputs:
            factors = self.inputs.trust_from_holdout.get_dict()
            error = self.ctx.ensemble.outputs.summary['rmse_f_holdout_mean']
            inputs.eps_lo, inputs.eps_hi = orm.Float(factors['lo'] * error), orm.Float(factors['hi'] * error)
            self.report(f'iteration {self.ctx.iteration}: trust levels {inputs.eps_lo.value:.3f} / {inputs.eps_hi.value:.3f} '
                        f'eV/Å = {factors["lo"]:g} / {factors["hi"]:g} x the held-out force RMSE {error:.3f} eV/Å')
        inputs.metadata = {'call_link_label': EXPLORE_LINK.format(iteration=self.ctx.iteration)}
        return ToContext(exploration=self.submit(ExploreMDWorkChain, **inputs))

    def inspect_explore(self):
        node = self.ctx.exploration
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_EXPLORATION.format(iteration=self.ctx.iteration)
        statistics = node.outputs.statistics
        self.ctx.table_nodes[f'exploration_{self.ctx.iteration}'] = statistics
        self.ctx.candidates = dict(node.outputs.candidates.items()) if 'candidates' in node.outputs else {}
        conditions = statistics.get_dict().get('conditions', {})
        accurate = [c['accurate_fraction'] for c in conditions.values()]
        failed = [c['failed_fraction'] for c in conditions.values()]
        threshold = self.inputs.accurate_threshold.value
        self.report(
            f'iteration {self.ctx.iteration}: {len(self.ctx.candidates)} candidates; accurate fraction per condition '
            + ', '.join(f'{name} {c["accurate_fraction"]:.2f}' for name, c in conditions.items())
        )
        self.ctx.quiet_iterations = 0 if self.ctx.candidates else self.ctx.quiet_iterations + 1
        at_last_stage = self.ctx.iteration >= len(self.inputs.schedule.get_list()) - 1
        self.ctx.stop_reason = convergence_reason(
            accurate, len(self.ctx.candidates), self.ctx.quiet_iterations, threshold, self.inputs.patience.value, at_last_stage,
            failed,
        )
        if self.ctx.stop_reason is None and not at_last_stage and accurate and min(accurate) >= threshold:
            self.report(f'iteration {self.ctx.iteration}: accurate, but the schedule has longer stages ahead: going on')
        return None

    def has_candidates(self):
        # a converged exploration's candidates are not labeled
        return bool(self.ctx.candidates) and self.ctx.stop_reason is None

    def label_candidates(self):
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.structures = self.ctx.candidates
        inputs.metadata = {'call_link_label': LABEL_LINK.format(iteration=self.ctx.iteration)}
        return ToContext(labeling=self.submit(LabelWorkChain, **inputs))

    def inspect_labels(self):
        node = self.ctx.labeling
        if not node.is_finished_ok or 'dataset' not in node.outputs:
            return self.exit_codes.ERROR_LABELING.format(iteration=self.ctx.iteration)
        self.ctx.table_nodes[f'labels_{self.ctx.iteration}'] = node.outputs.statistics
        added = node.outputs.dataset
        self.ctx.dataset = merge_datasets(
            previous=self.ctx.dataset, added=added, metadata={'call_link_label': f'merge_{self.ctx.iteration}'}
        )
        self.report(f'iteration {self.ctx.iteration}: {added.nframes} labels added, dataset now {self.ctx.dataset.nframes} frames')
        return None

    def end_iteration(self):
        self.ctx.iteration += 1

    def has_production(self):
        return bool(self.inputs.get('production'))

    def train_production(self):
        inputs = AttributeDict(self.exposed_inputs(TrainEnsembleWorkChain, namespace='production'))
        inputs.train.train.datasets = {'data': self.ctx.dataset}
        train_holdout = self.inputs.train.get('holdout')
        if 'holdout' not in inputs and train_holdout is not None:
            inputs.holdout = train_holdout
        if self.inputs.production_reuse.value:
            wanted = {f'model_{i}' for i in range(len(inputs.seeds.get_list()))}
            inputs.init_models = training_folders({k: p for k, p in self.ctx.potentials.items() if k in wanted})
        inputs.metadata = {'call_link_label': PRODUCTION_LINK}
        self.report(f'production training of {len(inputs.seeds.get_list())} model(s) on the final {self.ctx.dataset.nframes} frames')
        return ToContext(production=self.submit(TrainEnsembleWorkChain, **inputs))

    def inspect_production(self):
        node = self.ctx.production
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_PRODUCTION.format(message=f'<{node.pk}> exit {node.exit_status}')
        for key, potential in node.outputs.potentials.items():
            self.out(f'production.{key}', potential)
        self.out('production.summary', node.outputs.summary)
        self.report(f'production model(s): {summary_errors(node.outputs.summary.get_dict())}')
        return None

    def results(self):
        for key, node in self.ctx.potentials.items():
            self.out(f'potentials.{key}', node)
        self.out('dataset', self.ctx.dataset)
        table = tabulate_iterations(stop_reason=orm.Str(self.ctx.stop_reason), **self.ctx.table_nodes)
        self.out('iterations', table['iterations'])
        self.out('stop_reason', table['stop_reason'])
        self.report(f'stopped after {self.ctx.iteration} iteration(s): {self.ctx.stop_reason}')
