"""LabelWorkChain: energy, forces and virial of many structures with one reference engine, as one dataset.

Engines: the oracle (``liqcryst.oracle``: many structures per job, jobs in parallel), CP2K (aiida-cp2k, one
``Cp2kBaseWorkChain`` per structure, so SCF failures go through its restart handler) and VASP (aiida-vasp's
``vasp.vasp`` work chain, one per structure). Every engine gives the label contract of DEVELOPERS.md; a
structure that cannot be labeled is reported, listed in the ``failed`` output and left out of the dataset.
"""

from __future__ import annotations

import time

import numpy as np
from aiida import orm
from aiida.engine import WorkChain, calcfunction, if_
from aiida.plugins import CalculationFactory, WorkflowFactory

from aiida_liqcryst.engines import cp2k as cp2k_engine
from aiida_liqcryst.engines import oracle as oracle_engine
from aiida_liqcryst.protocols import ProtocolMixin, recursive_merge

#: engine -> the calculation plugin its code must run
ENGINE_PLUGINS = {'oracle': 'liqcryst.oracle', 'cp2k': 'cp2k', 'vasp': 'vasp.vasp'}
CP2K_KWARGS = ('cutoff', 'rel_cutoff', 'eps_scf', 'max_scf', 'outer_max_scf', 'basis_set')
GPA_PER_KBAR = 0.1


# ---------------------------------------------------------------------------------------------------------------------
# Engine helpers: plain functions (testable without running anything)
# ---------------------------------------------------------------------------------------------------------------------


def cp2k_input_sections(structure, parameters: dict) -> dict:
    """CP2K input sections for ``structure`` from the cp2k ``parameters`` (cp2k_parameters kwargs + ``sections``)."""
    kwargs = {key: parameters[key] for key in CP2K_KWARGS if key in parameters}
    sections = cp2k_engine.cp2k_parameters(structure, **kwargs)
    return recursive_merge(sections, parameters.get('sections', {}))


def vasp_inputs(code, structure, potential_family: str, parameters: dict, options: dict | None = None,
                potential_mapping: dict | None = None, settings: dict | None = None) -> dict:
    """Inputs of aiida-vasp's ``vasp.vasp`` work chain for one PBE single point at Gamma.

    :param parameters: ``{'incar': {...}}`` (aiida-vasp's parameters namespaces), e.g. ENCUT 520, ISMEAR 0, SIGMA 0.05.
    :param potential_family: name of an uploaded PAW-PBE POTCAR family (``aiida-vasp potcar uploadfamily``).
    :param potential_mapping: element -> POTCAR symbol; default the element itself.
    """
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh([1, 1, 1], offset=[0.0, 0.0, 0.0])  # Gamma only, as the paper
    elements = sorted({structure.get_kind(site.kind_name).symbol for site in structure.sites})
    mapping = {element: element for element in elements}
    mapping.update(potential_mapping or {})
    parser = {'parser_settings': {'energy_type': ['energy_free', 'energy_extrapolated']}}
    inputs = {
        'code': code,
        'structure': structure,
        'parameters': orm.Dict(parameters),
        'kpoints': kpoints,
        'potential_family': orm.Str(potential_family),
        'potential_mapping': orm.Dict({kind: mapping[structure.get_kind(kind).symbol] for kind in structure.get_kind_names()}),
        'settings': orm.Dict(recursive_merge(parser, settings or {})),
        'calc': {'metadata': {'options': dict(options or {})}},
    }
    return inputs


def vasp_label_arrays(misc: dict, volume: float, pstress_kbar: float = 0.0) -> dict:
    """Label from aiida-vasp's ``misc`` output: free energy (TOTEN), forces, virial from VASP's stress.

    VASP's stress (kB) is pressure-like (positive = compressed), like CP2K's: W = +sigma * V. With PSTRESS the
    ionic-step free energy in vasprun.xml includes P*V, which is removed (as ASE does).
    """
    from ase.units import GPa

    energies = misc['total_energies']
    energy = energies['energy_free'] if 'energy_free' in energies else energies['energy_extrapolated']
    energy = float(energy) - pstress_kbar * GPA_PER_KBAR * GPa * volume
    stress = np.asarray(misc['stress'], dtype=float).reshape(3, 3)
    return {
        'energy': energy,
        'forces': np.asarray(misc['forces'], dtype=float).reshape(-1, 3),
        'virial': stress * GPA_PER_KBAR * GPa * volume,
    }


def _label_node(label: dict) -> orm.ArrayData:
    node = orm.ArrayData()
    node.set_array('energy', np.array([float(label['energy'])]))
    node.set_array('forces', np.asarray(label['forces'], dtype=float).reshape(-1, 3))
    node.set_array('virial', np.asarray(label['virial'], dtype=float).reshape(3, 3))
    return node


@calcfunction
def cp2k_labels(retrieved: orm.FolderData) -> orm.ArrayData:
    """The label (energy, forces, virial) parsed from a CP2K ENERGY_FORCE run's retrieved output."""
    return _label_node(cp2k_engine.parse_cp2k_labels(retrieved))


@calcfunction
def vasp_labels(misc: orm.Dict, structure: orm.StructureData, parameters: orm.Dict) -> orm.ArrayData:
    """The label (energy, forces, virial) from a VASP single point's ``misc`` output."""
    incar = {key.lower(): value for key, value in parameters.get_dict().get('incar', parameters.get_dict()).items()}
    return _label_node(vasp_label_arrays(misc.get_dict(), structure.get_cell_volume(), float(incar.get('pstress', 0.0))))


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------


def validate_engine(value, _):
    if value is not None and value.value not in ENGINE_PLUGINS:
        return f'`engine`: unknown engine {value.value!r}; choose one of {sorted(ENGINE_PLUGINS)}'
    return None


def validate_protocol(value, _):
    if value is None:
        return None
    available = sorted(LabelWorkChain.get_available_protocols())
    if value.value not in available:
        return f'`protocol`: unknown protocol {value.value!r}; choose one of {available}'
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
    unknown = set(data) - set(ENGINE_PLUGINS)
    if unknown:
        return (f'`{name}` is keyed by engine ({", ".join(sorted(ENGINE_PLUGINS))}), e.g. '
                f'{{"oracle": {{"relax_steps": 10}}}}; unknown keys {sorted(unknown)}'), data
    return None, data


def validate_inputs(inputs, ctx):
    """Engine/code consistency, elements in the type map, and the engine's parameters/settings."""
    if 'engine' not in ctx or 'code' not in ctx:  # excluded by a process that exposes this one and sets them itself
        return None
    engine = inputs['engine'].value if 'engine' in inputs else None
    if engine not in ENGINE_PLUGINS:
        return None  # reported by the port validator
    code = inputs.get('code')
    plugin = code.default_calc_job_plugin if code is not None else None
    if plugin is not None and plugin != ENGINE_PLUGINS[engine]:
        return (f'`code` <{code.full_label}> runs `{plugin}` but engine {engine!r} needs a code for '
                f'`{ENGINE_PLUGINS[engine]}`: pass the {engine} code or change `engine`')
    structures = inputs.get('structures') or {}
    if 'type_map' in inputs and structures:
        type_map = inputs['type_map'].get_list()
        for key, structure in structures.items():
            unknown = sorted(set(structure.get_symbols_set()) - set(type_map))
            if unknown:
                return f'`structures.{key}`: elements {unknown} are not in `type_map` {type_map}: add them to it'
    error, parameters = _engine_sections(inputs.get('parameters'), 'parameters')
    if error:
        return error
    error, settings = _engine_sections(inputs.get('settings'), 'settings')
    if error:
        return error
    if engine == 'oracle':
        if parameters.get('oracle'):
            return '`parameters.oracle`: the oracle has no parameters; its options (relax_steps, md) go in `settings`'
        message = oracle_engine.validate_settings(settings.get('oracle', {}))
        if message:
            return f'`settings.oracle`: {message}'
    if engine == 'cp2k':
        cp2k = parameters.get('cp2k', {})
        unknown = set(cp2k) - set(CP2K_KWARGS) - {'sections'}
        if unknown:
            return f'`parameters.cp2k`: unknown keys {sorted(unknown)}; allowed: {sorted(CP2K_KWARGS)} and `sections`'
        elements = {el for s in structures.values() for el in s.get_symbols_set()}
        for element in sorted(elements):
            try:
                cp2k_engine.basis_valence(element, cp2k.get('basis_set', cp2k_engine.BASIS_SET))
            except (ValueError, OSError) as exc:
                return f'`structures`: CP2K cannot label {element}: {exc}'
    if engine == 'vasp':
        if 'potential_family' not in inputs:
            return '`potential_family`: the VASP engine needs the name of an uploaded PAW-PBE POTCAR family'
        from aiida_vasp.data.potcar import PotcarData

        family = inputs['potential_family'].value
        if PotcarData.get_potcar_group(family) is None:
            return (f'`potential_family`: no POTCAR family {family!r} in this profile; upload one with '
                    '`aiida-vasp potcar uploadfamily`')
    return None


# ---------------------------------------------------------------------------------------------------------------------
# The work chain
# ---------------------------------------------------------------------------------------------------------------------


class LabelWorkChain(ProtocolMixin, WorkChain):
    """Label ``structures`` with one reference engine and collect the labels into a ``LabeledDatasetData``.

    The oracle labels ``batch_size`` structures per ``OracleCalculation`` (the batches run in parallel); CP2K
    and VASP run one single point per structure, wrapped in their base restart work chains. Structures that
    fail are reported and listed in ``failed``; the work chain fails only when nothing could be labeled.
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
                   help='The reference engine: `oracle` (SevenNet-0), `cp2k` or `vasp`.')
        spec.input('code', valid_type=orm.AbstractCode,
                   help='Code of the engine (plugin liqcryst.oracle, cp2k or vasp.vasp).')
        spec.input('type_map', valid_type=orm.List, validator=validate_type_map,
                   help='Element order of the dataset (the DeePMD type map); every element must be in it.')
        spec.input('batch_size', valid_type=orm.Int, default=lambda: orm.Int(8), validator=validate_batch_size,
                   help='Oracle: structures per job (the jobs run in parallel). Ignored by cp2k and vasp.')
        spec.input('parameters', valid_type=orm.Dict, required=False,
                   help='Engine parameters keyed by engine: `cp2k`: cp2k_parameters kwargs (cutoff, rel_cutoff in Ry, '
                   'eps_scf, ...) and `sections`; `vasp`: {incar: {...}}. Merged over the protocol defaults.')
        spec.input('settings', valid_type=orm.Dict, required=False,
                   help='Engine settings keyed by engine: `oracle`: relax_steps, fmax, md {...}; `cp2k`/`vasp`: the '
                   'settings of their calculation. Merged over the protocol defaults.')
        spec.input('potential_family', valid_type=orm.Str, required=False,
                   help='VASP only: name of the uploaded PAW-PBE POTCAR family.')
        spec.input('options', valid_type=orm.Dict, required=False,
                   help='`metadata.options` of every job (resources, max_wallclock_seconds, withmpi, ...).')
        spec.input('max_iterations', valid_type=orm.Int, default=lambda: orm.Int(3),
                   help='cp2k/vasp: restarts of one single point by the base work chain before it counts as failed.')
        spec.input('protocol', valid_type=orm.Str, default=lambda: orm.Str(cls.get_default_protocol()),
                   validator=validate_protocol,
                   help='Protocol whose engine defaults fill in what `parameters`/`settings`/`options` leave out.')
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            if_(cls.is_oracle)(cls.run_oracle, cls.inspect_oracle)
            .elif_(cls.is_cp2k)(cls.run_cp2k, cls.inspect_cp2k)
            .else_(cls.run_vasp, cls.inspect_vasp),
            cls.results,
        )

        spec.output('dataset', valid_type=orm.Data, required=False,
                    help='LabeledDatasetData of every labeled frame (build_dataset of the structure/label pairs).')
        spec.output('statistics', valid_type=orm.Dict,
                    help='n_structures, n_labeled, n_failed, failed (key: reason), seconds (engine), wall_seconds, '
                    'labels_per_second.')
        spec.output('failed', valid_type=orm.List, help='Keys of the structures that could not be labeled.')
        spec.exit_code(410, 'ERROR_NOTHING_LABELED', message='no structure could be labeled: {failed}')

    # -- builder ----------------------------------------------------------------------------------------------

    @classmethod
    def get_builder_from_protocol(cls, code, structures, engine, type_map, protocol=None, overrides=None,
                                  options=None, potential_family=None):
        """A builder labeling ``structures`` (dict key -> StructureData) with ``engine`` and a named protocol.

        :param overrides: nested dict merged into the protocol (``batch_size``, ``parameters``, ``settings``, ...).
        :param options: ``metadata.options`` of every job, merged over the protocol's.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.structures = dict(structures)
        builder.engine = orm.Str(engine)
        builder.code = code
        builder.type_map = orm.List(list(type_map))
        builder.batch_size = orm.Int(inputs['batch_size'])
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        builder.protocol = orm.Str(protocol or cls.get_default_protocol())
        builder.options = orm.Dict(recursive_merge(inputs.get('options', {}), options or {}))
        if inputs.get('parameters', {}).get(engine):
            builder.parameters = orm.Dict({engine: inputs['parameters'][engine]})
        if inputs.get('settings', {}).get(engine):
            builder.settings = orm.Dict({engine: inputs['settings'][engine]})
        if engine == 'vasp':
            builder.potential_family = orm.Str(potential_family or inputs['potential_family'])
        return builder

    # -- steps ------------------------------------------------------------------------------------------------

    def setup(self):
        engine = self.inputs.engine.value
        defaults = self.get_protocol_inputs(self.inputs.protocol.value)
        given = {name: self.inputs[name].get_dict() if name in self.inputs else {} for name in ('parameters', 'settings')}
        self.ctx.engine = engine
        self.ctx.parameters = recursive_merge(defaults.get('parameters', {}).get(engine, {}), given['parameters'].get(engine, {}))
        self.ctx.settings = recursive_merge(defaults.get('settings', {}).get(engine, {}), given['settings'].get(engine, {}))
        self.ctx.options = recursive_merge(defaults.get('options', {}),
                                           self.inputs.options.get_dict() if 'options' in self.inputs else {})
        self.ctx.start = time.time()
        self.ctx.pairs = {}  # frame key -> [uuid of the StructureData, uuid of the label ArrayData]
        self.ctx.failed = {}  # input key -> reason
        self.ctx.engine_seconds = 0.0
        self.ctx.launched = {}  # child context key -> input keys it labels

    def is_oracle(self):
        return self.ctx.engine == 'oracle'

    def is_cp2k(self):
        return self.ctx.engine == 'cp2k'

    # oracle ---------------------------------------------------------------------------------------------------

    def run_oracle(self):
        OracleCalculation = CalculationFactory('liqcryst.oracle')
        keys = sorted(self.inputs.structures)
        size = self.inputs.batch_size.value
        for index, start in enumerate(range(0, len(keys), size)):
            batch = keys[start:start + size]
            inputs = {
                'code': self.inputs.code,
                'structures': {key: self.inputs.structures[key] for key in batch},
                'metadata': {'options': dict(self.ctx.options), 'call_link_label': f'oracle_batch_{index}'},
            }
            if self.ctx.settings:
                inputs['settings'] = orm.Dict(self.ctx.settings)
            node = self.submit(OracleCalculation, **inputs)
            self.ctx.launched[f'batch_{index}'] = batch
            self.to_context(**{f'batch_{index}': node})
        self.report(f'{len(keys)} structures in {len(self.ctx.launched)} oracle job(s) of at most {size}')

    def inspect_oracle(self):
        for name, batch in self.ctx.launched.items():
            node = self.ctx[name]
            if node.is_finished and node.exit_status in (0, 310, 311):
                parameters = node.outputs.output_parameters.get_dict()
                self.ctx.engine_seconds += float(parameters.get('seconds', 0.0))
                for key, reason in parameters.get('failed', {}).items():
                    self._fail(key, reason)
                if not parameters.get('n_labeled'):
                    continue  # every structure of the batch failed: nothing in the output namespaces
                structures = node.outputs.structures
                for key, labels in node.outputs.labels.items():
                    self._add(key, structures[key], labels)
            else:
                for key in batch:
                    self._fail(key, f'oracle job <{node.pk}> failed: exit {node.exit_status} {node.exit_message or ""}')

    # cp2k -----------------------------------------------------------------------------------------------------

    def run_cp2k(self):
        Cp2kLabelWorkChain = WorkflowFactory('liqcryst.cp2k_label')
        options = recursive_merge({'withmpi': False}, self.ctx.options)
        cp2k_settings = orm.Dict(self.ctx.settings) if self.ctx.settings else None
        parameters_by_elements = {}  # one Dict node per element set: most structures share it
        for index, key in enumerate(sorted(self.inputs.structures)):
            structure = self.inputs.structures[key]
            elements = tuple(sorted(structure.get_symbols_set()))
            if elements not in parameters_by_elements:
                parameters_by_elements[elements] = orm.Dict(cp2k_input_sections(structure, self.ctx.parameters))
            cp2k = {
                'code': self.inputs.code,
                'structure': structure,
                'parameters': parameters_by_elements[elements],
                'metadata': {'options': options},
            }
            if cp2k_settings is not None:
                cp2k['settings'] = cp2k_settings
            node = self.submit(
                Cp2kLabelWorkChain,  # aiida-cp2k's Cp2kBaseWorkChain + a handler for an SCF that did not converge
                cp2k=cp2k,
                max_iterations=self.inputs.max_iterations,
                # aiida-cp2k's restart of incomplete runs (walltime) is disabled by default there
                handler_overrides=orm.Dict({'restart_incomplete_calculation': {'enabled': True}}),
                metadata={'call_link_label': f'cp2k_{index}'},
            )
            self.ctx.launched[f'cp2k_{index}'] = [key]
            self.to_context(**{f'cp2k_{index}': node})
        self.report(f'{len(self.ctx.launched)} CP2K single points launched')

    def inspect_cp2k(self):
        for name, (key,) in self.ctx.launched.items():
            node = self.ctx[name]
            if not node.is_finished_ok:
                self._fail(key, f'{node.process_label} <{node.pk}> failed: exit {node.exit_status} {node.exit_message or ""}')
                continue
            try:
                parsed = cp2k_engine.parse_cp2k_labels(node.outputs.retrieved)
            except cp2k_engine.Cp2kOutputError as exc:
                self._fail(key, f'CP2K output <{node.pk}>: {exc}')
                continue
            if not all(np.all(np.isfinite(parsed[name])) for name in ('energy', 'forces', 'virial')):
                self._fail(key, f'CP2K output <{node.pk}>: non-finite label')
                continue
            self.ctx.engine_seconds += parsed['seconds'] or 0.0
            labels = cp2k_labels(node.outputs.retrieved, metadata={'call_link_label': f'labels_{name}'})
            self._add(key, self.inputs.structures[key], labels)

    # vasp -----------------------------------------------------------------------------------------------------

    def run_vasp(self):
        VaspWorkChain = WorkflowFactory('vasp.vasp')
        for index, key in enumerate(sorted(self.inputs.structures)):
            inputs = vasp_inputs(
                self.inputs.code, self.inputs.structures[key], self.inputs.potential_family.value, self.ctx.parameters,
                self.ctx.options, settings=self.ctx.settings,
            )
            inputs['max_iterations'] = self.inputs.max_iterations
            inputs['metadata'] = {'call_link_label': f'vasp_{index}'}
            node = self.submit(VaspWorkChain, **inputs)
            self.ctx.launched[f'vasp_{index}'] = [key]
            self.to_context(**{f'vasp_{index}': node})
        self.report(f'{len(self.ctx.launched)} VASP single points launched')

    def inspect_vasp(self):
        for name, (key,) in self.ctx.launched.items():
            node = self.ctx[name]
            if not node.is_finished_ok or 'misc' not in node.outputs:
                self._fail(key, f'VASP work chain <{node.pk}> failed: exit {node.exit_status} {node.exit_message or ""}')
                continue
            misc = node.outputs.misc
            missing = {'total_energies', 'forces', 'stress'} - set(misc.get_dict())
            if missing:
                self._fail(key, f'VASP output <{node.pk}> lacks {sorted(missing)}')
                continue
            self.ctx.engine_seconds += float(misc.get_dict().get('run_stats', {}).get('elapsed_time', 0.0) or 0.0)
            labels = vasp_labels(misc, self.inputs.structures[key], orm.Dict(self.ctx.parameters),
                                 metadata={'call_link_label': f'labels_{name}'})
            self._add(key, self.inputs.structures[key], labels)

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
        self.report(f'{n_labeled} frames labeled with {self.ctx.engine}, {len(failed)} failed, {wall:.0f} s')
        return None
