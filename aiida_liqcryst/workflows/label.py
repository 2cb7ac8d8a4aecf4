"""LabelWorkChain: energy, forces and virial of many structures with one reference engine, as one dataset.

The engine is an adapter found by name (:mod:`aiida_liqcryst.reference`, entry-point group ``liqcryst.reference``):
it says which processes label a batch of structures and turns each finished process into labels or recorded
failures. This work chain only submits what the engine hands it and collects the labels, so it has no branch per
engine. Protocol defaults are written into the inputs when a builder is made (``get_builder_from_protocol``): what a
stored process did depends on its inputs only.
"""

from __future__ import annotations

import time

from aiida import orm
from aiida.engine import WorkChain

from aiida_liqcryst.protocols import ProtocolMixin, recursive_merge
from aiida_liqcryst.reference import engine_names, get_engine
from aiida_liqcryst.validators import missing_elements

#: output namespace of the labels by frame key
LABELS_OUTPUT = 'labels'

# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def validate_engine(value, _):
    if value is not None and value.value not in engine_names():
        return f'`engine`: unknown engine {value.value!r}; choose one of {engine_names()}'
    return None


def validate_structures(value, _):
    if not value:
        return '`structures`: give at least one structure to label'
    return None


def validate_type_map(value, _):
    if value is None:
        return None
    from ase.data import chemical_symbols

    type_map = value.get_list()
    if not type_map or len(set(type_map)) != len(type_map) or any(t not in chemical_symbols[1:] for t in type_map):
        return f'`type_map`: give distinct element symbols, e.g. ["O", "Si"], got {type_map}'
    return None


def validate_batch_size(value, _):
    if value is not None and value.value < 1:
        return f'`batch_size` must be a positive integer, got {value.value}'
    return None


def _engine_sections(node, name):
    """Check a by-engine Dict (``parameters``/``settings``); return (error, dict)."""
    if node is None:
        return None, {}
    data = node.get_dict()
    names = engine_names()
    unknown = set(data) - set(names)
    if unknown:
        return (f'`{name}` is keyed by engine ({", ".join(names)}), e.g. '
                f'{{"oracle": {{"relax_steps": 10}}}}; unknown keys {sorted(unknown)}'), data
    return None, data


def validate_inputs(inputs, ctx):
    """Engine/code consistency, elements in the type map, and the engine's own check of its parameters/settings."""
    if 'engine' not in ctx or 'code' not in ctx:  # excluded by a process that exposes this one and sets them itself
        return None
    name = inputs['engine'].value if 'engine' in inputs else None
    if name not in engine_names():
        return None  # reported by the port validator
    engine = get_engine(name)
    code = inputs.get('code')
    plugin = code.default_calc_job_plugin if code is not None else None
    if plugin is not None and plugin != engine.calc_plugin:
        return (f'`code` <{code.full_label}> runs `{plugin}` but engine {name!r} needs a code for '
                f'`{engine.calc_plugin}`: pass the {name} code or change `engine`')
    structures = inputs.get('structures') or {}
    if 'type_map' in inputs and structures:
        type_map = inputs['type_map'].get_list()
        for key, structure in structures.items():
            unknown = missing_elements(structure, type_map)
            if unknown:
                return f'`structures.{key}`: elements {unknown} are not in `type_map` {type_map}: add them to it'
    error, parameters = _engine_sections(inputs.get('parameters'), 'parameters')
    if error:
        return error
    error, settings = _engine_sections(inputs.get('settings'), 'settings')
    if error:
        return error
    return engine.check(parameters.get(name, {}), settings.get(name, {}), structures)


# ---------------------------------------------------------------------------------------------------------------------
# The work chain
# ---------------------------------------------------------------------------------------------------------------------


class LabelWorkChain(ProtocolMixin, WorkChain):
    """Label ``structures`` with one reference engine and collect the labels into a ``LabeledDatasetData``.

    The engine decides the jobs: the oracle labels ``batch_size`` structures per ``OracleCalculation`` (the batches
    run in parallel); CP2K and VASP run one single point per structure in their base restart work chains.
    Structures that fail are reported and listed in ``failed``; the work chain fails only when nothing could be
    labeled.
    """

    _protocol_file = 'label'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace(
            'structures', valid_type=orm.StructureData, dynamic=True, validator=validate_structures,
            help='The structures to label, by key (keys name the dataset frames; MD frames of the oracle `<key>_f<i>`).',
        )
        spec.input('engine', valid_type=orm.Str, validator=validate_engine,
                   help='The reference engine, by its name in the entry-point group `liqcryst.reference` '
                        '(`oracle`: SevenNet-0, `cp2k`, `vasp`, or one a user registers).')
        spec.input('code', valid_type=orm.AbstractCode,
                   help='Code of the engine (its calculation plugin: liqcryst.oracle, cp2k or vasp.vasp).')
        spec.input('type_map', valid_type=orm.List, validator=validate_type_map,
                   help='Element order of the dataset (the DeePMD type map); every element must be in it.')
        spec.input('batch_size', valid_type=orm.Int, default=lambda: orm.Int(8), validator=validate_batch_size,
                   help='Structures per job for engines that batch (the oracle; the jobs run in parallel).')
        spec.input('parameters', valid_type=orm.Dict, required=False,
                   help='Engine parameters keyed by engine: `cp2k`: cp2k_parameters kwargs (cutoff, rel_cutoff in Ry, '
                   'eps_scf, ...) and `sections`; `vasp`: incar, potential_family, potential_mapping, kpoints_mesh, '
                   'kpoints_offset. '
                   'Only the chosen engine\'s section is used, as given (`get_builder_from_protocol` fills it).')
        spec.input('settings', valid_type=orm.Dict, required=False,
                   help='Engine settings keyed by engine: `oracle`: relax_steps, fmax, md {...}; `cp2k`/`vasp`: the '
                   'settings of their calculation.')
        spec.input('options', valid_type=orm.Dict, required=False,
                   help='`metadata.options` of every job (resources, max_wallclock_seconds, withmpi, ...).')
        spec.input('max_iterations', valid_type=orm.Int, default=lambda: orm.Int(3),
                   help='Engines with a restart work chain (cp2k, vasp): restarts of one single point before it counts '
                        'as failed.')
        spec.inputs.validator = validate_inputs

        spec.outline(cls.setup, cls.run_jobs, cls.inspect_jobs, cls.results)

        spec.output('dataset', valid_type=orm.Data, required=False,
                    help='LabeledDatasetData of every labeled frame (build_dataset of the structure/label pairs).')
        spec.output_namespace(LABELS_OUTPUT, valid_type=orm.ArrayData, dynamic=True, required=False,
                              help='The label of each frame by its key (energy, forces, virial): for workflows that '
                                   'need the reference energy of a given structure (E(V) points, found crystals).')
        spec.output('statistics', valid_type=orm.Dict,
                    help='n_structures, n_labeled, n_failed, failed (key: reason), seconds (engine), wall_seconds, '
                    'labels_per_second.')
        spec.output('failed', valid_type=orm.List, help='Keys of the structures that could not be labeled.')
        spec.exit_code(410, 'ERROR_NOTHING_LABELED', message='no structure could be labeled: {failed}')

    # -- builder ----------------------------------------------------------------------------------------------

    @classmethod
    def get_builder_from_protocol(cls, code, structures, engine, type_map, protocol=None, overrides=None,
                                  options=None, potential_family=None):
        """A builder labeling ``structures`` (dict key -> StructureData, or None to set later) with ``engine``.

        The protocol's section of the engine is written into the inputs here; the running process reads no protocol.

        :param overrides: nested dict merged into the protocol (``batch_size``, ``parameters``, ``settings``, ...).
        :param options: ``metadata.options`` of every job, merged over the protocol's.
        :param potential_family: VASP: the POTCAR family (else the protocol's ``parameters.vasp.potential_family``).
        :raises ValueError: for an unknown engine or protocol, or unknown override keys.
        """
        get_engine(engine)  # an unknown engine is refused here, with the registered ones listed
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        if structures is not None:
            builder.structures = dict(structures)
        builder.engine = orm.Str(engine)
        builder.code = code
        builder.type_map = orm.List(list(type_map))
        builder.batch_size = orm.Int(inputs['batch_size'])
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        builder.options = orm.Dict(recursive_merge(inputs.get('options', {}), options or {}))
        parameters = dict(inputs.get('parameters', {}).get(engine) or {})
        if potential_family is not None:
            parameters['potential_family'] = potential_family
        if parameters:
            builder.parameters = orm.Dict({engine: parameters})
        if inputs.get('settings', {}).get(engine):
            builder.settings = orm.Dict({engine: inputs['settings'][engine]})
        return builder

    # -- steps ------------------------------------------------------------------------------------------------

    def _section(self, name: str) -> dict:
        return self.inputs[name].get_dict().get(self.ctx.engine, {}) if name in self.inputs else {}

    def setup(self):
        self.ctx.engine = self.inputs.engine.value
        self.ctx.start = time.time()
        self.ctx.pairs = {}  # frame key -> [uuid of the StructureData, uuid of the label ArrayData]
        self.ctx.failed = {}  # input key -> reason
        self.ctx.engine_seconds = 0.0
        self.ctx.launched = {}  # job name (context key, call link label) -> input keys it labels

    def run_jobs(self):
        engine = get_engine(self.ctx.engine)
        jobs = engine.jobs(
            dict(self.inputs.structures), self.inputs.code, self._section('parameters'), self._section('settings'),
            self.inputs.options.get_dict() if 'options' in self.inputs else {}, self.inputs.batch_size.value,
            self.inputs.max_iterations.value,
        )
        for job in jobs:
            inputs = dict(job.inputs)
            inputs['metadata'] = {**inputs.get('metadata', {}), 'call_link_label': job.name}
            self.to_context(**{job.name: self.submit(job.process, **inputs)})
            self.ctx.launched[job.name] = list(job.keys)
        batches = f' of at most {self.inputs.batch_size.value}' if engine.batched else ''
        self.report(f'{len(self.inputs.structures)} structures in {len(jobs)} {self.ctx.engine} job(s){batches}')

    def inspect_jobs(self):
        engine = get_engine(self.ctx.engine)
        structures = dict(self.inputs.structures)
        for name, keys in self.ctx.launched.items():
            outcome = engine.collect(name, keys, self.ctx[name], structures)
            self.ctx.engine_seconds += outcome.seconds
            for key, reason in outcome.failed.items():
                self._fail(key, reason)
            for key, (structure, labels) in outcome.labels.items():
                self._add(key, structure, labels)

    # results --------------------------------------------------------------------------------------------------

    def _add(self, key: str, structure, labels):
        self.ctx.pairs[key] = [structure.uuid, labels.uuid]

    def _fail(self, key: str, reason: str):
        self.ctx.failed[key] = reason
        self.report(f'structure {key} could not be labeled and is left out: {reason}')

    def results(self):
        from aiida_liqcryst.deepmd.calcfunctions import build_dataset

        wall = time.time() - self.ctx.start
        failed = sorted(self.ctx.failed)
        n_labeled = len(self.ctx.pairs)
        statistics = {
            'engine': self.ctx.engine,
            'n_structures': len(self.inputs.structures),
            'n_labeled': n_labeled,
            'n_failed': len(failed),
            'failed': dict(self.ctx.failed),
            'seconds': self.ctx.engine_seconds,
            'wall_seconds': wall,
            'labels_per_second': n_labeled / wall if wall > 0 else None,
        }
        self.out('failed', orm.List(failed).store())
        self.out('statistics', orm.Dict(statistics).store())
        if not self.ctx.pairs:
            return self.exit_codes.ERROR_NOTHING_LABELED.format(failed='; '.join(f'{k}: {self.ctx.failed[k]}' for k in failed)[:500])
        pairs = {}
        for key, (structure, labels) in self.ctx.pairs.items():
            pairs[f'structure_{key}'] = orm.load_node(structure)
            pairs[f'labels_{key}'] = orm.load_node(labels)
        dataset = build_dataset(self.inputs.type_map, **pairs, metadata={'call_link_label': 'build_dataset'})
        self.out('dataset', dataset)
        for key, (_, labels) in self.ctx.pairs.items():
            self.out(f'{LABELS_OUTPUT}.{key}', orm.load_node(labels))
        self.report(f'{n_labeled} frames labeled with {self.ctx.engine}, {len(failed)} failed, {wall:.0f} s')
        return None
