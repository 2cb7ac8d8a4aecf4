"""EOSScanWorkChain: energy–volume curves of crystals with DeePMD potentials vs the reference (paper Fig. 2)."""

from __future__ import annotations

import re
import tempfile

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction
from aiida.plugins import CalculationFactory, WorkflowFactory

from aiida_liqcryst.analysis.eos import MIN_POINTS, TABLE_COLUMNS, TABLE_UNITS, eos_comparison_table
from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
from aiida_liqcryst.validators import code_validator, json_safe, missing_elements, task_settings_validator
from aiida_liqcryst.protocols import ProtocolMixin
from aiida_liqcryst.reference import default_code, engine_names, get_engine
from aiida_liqcryst.workflows.label import LABELS_OUTPUT, LabelWorkChain
from aiida_liqcryst.structures.polymorphs import POLYMORPHS, normalize_name
from aiida_liqcryst.workflows.vdos import REFERENCE, validate_parameters as validate_vdos_parameters

AseCalculation = CalculationFactory('liqcryst.ase')
ASE_CODE = code_validator('liqcryst.ase', what='the `aiida-liqcryst-ase` console script, e.g. ase@localhost')
VDOSWorkChain = WorkflowFactory('liqcryst.vdos')

RELAX_KEYS = ('pressure', 'fmax', 'steps', 'scan_steps', 'optimizer', 'threads')
LABEL_KEY = re.compile(r'^label_(?P<phase>.+)_p(?P<point>\d+)$')


def volume_fractions(volume_range, number_of_points: int) -> list[float]:
    """``number_of_points`` volume fractions V/V0 evenly spaced over ``volume_range`` = (min, max)."""
    return [float(f) for f in np.linspace(volume_range[0], volume_range[1], int(number_of_points))]


def validate_volume_range(value, _):
    if value is None:
        return None
    bounds = value.get_list()
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) for b in bounds):
        return f'`volume_range` must be [min, max] volume fractions V/V0, got {bounds}'
    if not 0 < bounds[0] < bounds[1]:
        return f'`volume_range` must satisfy 0 < min < max, got {bounds}'
    return None


def validate_number_of_points(value, _):
    if value is not None and value.value < MIN_POINTS:
        return f'`number_of_points` must be >= {MIN_POINTS} (a Birch–Murnaghan fit has four parameters), got {value.value}'
    return None


validate_relax_settings = task_settings_validator('relax_settings', RELAX_KEYS, {'task': 'eos', 'volume_fractions': [1.0]})


def validate_structures(value, _):
    if not value:
        return '`structures`: give at least one crystal (get_builder_from_protocol fills in the polymorph library)'
    bad = [key for key, s in value.items() if not all(s.pbc)]
    if bad:
        return f'`structures`: an E(V) scan needs 3D periodic crystals; not periodic: {bad}'
    return None


def validate_potentials(value, _):
    if not value:
        return '`potentials`: give at least one DeePMD potential (e.g. LP and HP)'
    if REFERENCE in value:
        return f'`potentials`: the key {REFERENCE!r} is reserved for the reference method; rename it'
    return None


def validate_inputs(inputs, _):
    engine = inputs.get('label', {}).get('engine')
    if engine is not None and engine.value in engine_names() and inputs.get('reference_eos', orm.Bool(True)).value:
        if get_engine(engine.value).ase_calculator is None:
            return (f'`reference_eos`: engine {engine.value!r} cannot relax crystals here (only engines with an ASE '
                    'calculator can); set it False: the reference curve is then the engine\'s energies at the '
                    'potential\'s geometries')
    if 'structures' not in inputs or 'potentials' not in inputs:
        return None
    for label, potential in inputs['potentials'].items():
        type_map = potential.base.attributes.get('type_map', None) or []
        for key, structure in inputs['structures'].items():
            unknown = missing_elements(structure, type_map)
            if unknown:
                return (
                    f'`structures.{key}`: elements {unknown} are not in the type_map {type_map} of potential {label!r}: '
                    'remove the structure, or use a potential trained with them'
                )
    vdos = inputs.get('vdos', {})
    if engine is not None and engine.value in engine_names() and inputs.get('run_vdos', orm.Bool(False)).value:
        if get_engine(engine.value).ase_calculator is None:
            return (f'`run_vdos`: the reference VDOS needs MD of the crystal by the reference; engine {engine.value!r} '
                    'cannot run it here: set run_vdos False')
    if 'phases' in vdos:
        unknown = sorted(set(vdos['phases'].get_list()) - set(inputs['structures']))
        if unknown:
            return f'`vdos.phases`: {unknown} are not among the `structures` {sorted(inputs["structures"])}'
    return None


@calcfunction
def eos_geometries(**results):
    """The geometries of the E(V) points of each phase (``results``: eos ArrayData by phase) as StructureData.

    Output keys ``<phase>_p<k>``, k the index of the point in the scan.
    """
    from ase import Atoms

    structures = {}
    for phase, arrays in results.items():
        numbers = arrays.get_array('numbers')
        for k, (cell, positions) in enumerate(zip(arrays.get_array('cells'), arrays.get_array('positions'))):
            structures[f'{phase}_p{k:02d}'] = orm.StructureData(ase=Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True))
    return structures


def _per_atom(arrays) -> tuple[np.ndarray, np.ndarray]:
    natoms = len(arrays.get_array('numbers'))
    return arrays.get_array('volumes') / natoms, arrays.get_array('energies') / natoms


@calcfunction
def tabulate_eos(parameters: orm.Dict, **nodes):
    """Birch–Murnaghan fits and the comparison table of one potential vs the reference, E(V) arrays and the figure.

    ``nodes``: ``eos_<phase>`` (the potential's scan), ``reference_<phase>`` (the reference's own scan, optional),
    ``label_<phase>_p<k>`` (reference labels of the potential's geometries), ``vdos_<phase>`` (spectra of a
    VDOSWorkChain, optional, drawn as insets). The reference curve of a phase is its own scan when given, else
    the reference energies of the potential's geometries. ``parameters``: ``potential`` (label),
    ``energy_zero`` (phase), ``titles`` (phase -> panel title). Curve alignment: see
    :func:`aiida_liqcryst.analysis.eos.eos_comparison_table`.
    """
    from aiida_liqcryst.analysis import plots
    from aiida_liqcryst.analysis.vdos import vdos_overlap

    params = parameters.get_dict()
    label = params['potential']
    potential_eos = {k[4:]: v for k, v in nodes.items() if k.startswith('eos_')}
    reference_eos = {k[10:]: v for k, v in nodes.items() if k.startswith('reference_')}
    spectra = {k[5:]: v for k, v in nodes.items() if k.startswith('vdos_')}
    labels = {}
    for key, node in nodes.items():
        if match := LABEL_KEY.match(key):
            labels.setdefault(match['phase'], {})[int(match['point'])] = float(node.get_array('energy')[0])

    curves, arrays, natoms = {}, orm.ArrayData(), {}
    for phase, eos in sorted(potential_eos.items()):
        natoms[phase] = len(eos.get_array('numbers'))
        v_pot, e_pot = _per_atom(eos)
        entry = {'potential': (v_pot, e_pot)}
        arrays.set_array(f'{phase}_volumes_potential', v_pot)
        arrays.set_array(f'{phase}_energies_potential', e_pot)
        points = labels.get(phase, {})
        if len(points) == v_pot.size:
            e_same = np.array([points[k] for k in range(v_pot.size)]) / natoms[phase]
            entry['same_geometry'] = (v_pot, e_same)
            arrays.set_array(f'{phase}_energies_reference_same_geometry', e_same)
        if phase in reference_eos:
            entry['reference'] = _per_atom(reference_eos[phase])
        else:
            entry['reference'] = entry.get('same_geometry')
        if entry['reference'] is not None:
            arrays.set_array(f'{phase}_volumes_reference', entry['reference'][0])
            arrays.set_array(f'{phase}_energies_reference', entry['reference'][1])
        curves[phase] = entry
    for phase in reference_eos:
        if phase not in curves:  # the potential's scan of this phase failed: the table says so
            curves[phase] = {'potential': None, 'reference': _per_atom(reference_eos[phase])}

    table = eos_comparison_table(curves, energy_zero=params.get('energy_zero'))
    rows = table['rows']
    for phase, row in rows.items():
        row['natoms'] = natoms.get(phase)
        if phase in spectra:
            s = spectra[phase]
            row['vdos_overlap'] = vdos_overlap(
                s.get_array(f'frequencies_{REFERENCE}'), s.get_array(f'vdos_{REFERENCE}'),
                s.get_array(f'frequencies_{label}'), s.get_array(f'vdos_{label}'),
            )
        rows[phase] = json_safe(row)  # the database stores no NaN

    titles = params.get('titles', {})
    plotted = {}
    for phase, entry in curves.items():
        methods = {}
        if entry['potential'] is not None:
            methods[f'{label} (DeePMD)'] = entry['potential']
        if entry.get('reference') is not None:
            methods[params.get('reference', REFERENCE)] = entry['reference']
        if methods:
            plotted[titles.get(phase, phase)] = methods
    insets = {
        titles.get(phase, phase): {
            f'{label} (DeePMD)': (s.get_array(f'frequencies_{label}'), s.get_array(f'vdos_{label}')),
            params.get('reference', REFERENCE): (s.get_array(f'frequencies_{REFERENCE}'), s.get_array(f'vdos_{REFERENCE}')),
        }
        for phase, s in spectra.items()
    }
    outputs = {
        'table': orm.Dict({
            'potential': label, 'reference': params.get('reference', REFERENCE), 'energy_zero': table['energy_zero'],
            'reference_curve': {p: 'own scan' if p in reference_eos else 'labels of the potential geometries' for p in rows},
            'columns': [*TABLE_COLUMNS, 'natoms'] + (['vdos_overlap'] if spectra else []),
            'units': TABLE_UNITS, 'phases': rows,
        }),
        'curves': arrays,
    }
    if plotted:
        with tempfile.TemporaryDirectory() as tmp:
            path = plots.ev_grid(f'{tmp}/ev_grid.png', plotted, insets=insets or None, ncols=min(4, len(plotted)))
            outputs['figure'] = orm.SinglefileData(path, filename=f'ev_grid_{label}.png')
    return outputs


def _fmt(value, spec='.2f'):
    return 'n/a' if value is None else format(value, spec)


class EOSScanWorkChain(ProtocolMixin, WorkChain):
    """E(V) curves of crystals with one or more DeePMD potentials and with the reference engine, Fig. 2.

    For each potential: one batched ``eos`` AseCalculation over all structures (relax positions and cell at
    ``relax_settings.pressure``, then scale to the volume fractions and relax positions and cell shape at each
    fixed volume); then the reference energies of exactly those geometries, by the ``label`` namespace's engine
    through ``LabelWorkChain`` (any registered engine: oracle, CP2K, VASP). With ``reference_eos`` (engines that
    relax crystals in the ASE tasks: the oracle) the reference also scans every structure with its own relaxations,
    which gives its own V0, B0; otherwise the table's ``reference_curve`` says the reference curve is the engine's
    energies at the potential's geometries. Birch–Murnaghan fits and the table are
    made in a calcfunction (:func:`tabulate_eos`): per potential a Dict table (V0, E0, B0, B0' of both methods,
    ΔV0 %, ΔB0 %, energies relative to ``energy_zero`` (α-quartz) and their difference in meV/atom, curve RMSEs
    in meV/atom; alignment in :func:`aiida_liqcryst.analysis.eos.eos_comparison_table`: ``curve_rmse`` compares
    shapes, each curve relative to its own minimum; ``relative_curve_rmse`` aligns each curve at its method's
    E0 of ``energy_zero``; ``same_geometry_rmse`` compares identical geometries without alignment), the E(V)
    arrays per atom and the E–V grid PNG. With ``run_vdos``, a VDOSWorkChain per phase of ``vdos.phases`` adds
    the VDOS overlap to the table and insets to the figure.
    """

    _protocol_file = 'eos_scan'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, validator=ASE_CODE,
                   help='The `aiida-liqcryst-ase` code.')
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, validator=validate_structures,
                             help='Crystals by phase name (e.g. the polymorph library: get_builder_from_protocol).')
        spec.input_namespace('potentials', valid_type=DeepPotentialData, dynamic=True, validator=validate_potentials,
                             help='DeePMD potentials by label (e.g. LP and HP); each gets its own table and figure.')
        spec.input('volume_range', valid_type=orm.List, default=lambda: orm.List([0.88, 1.12]), validator=validate_volume_range,
                   help='[min, max] volume fractions V/V0 of the scan (V0: the relaxed volume, or the input one).')
        spec.input('number_of_points', valid_type=orm.Int, default=lambda: orm.Int(9), validator=validate_number_of_points,
                   help='Number of volumes of the scan (>= 5).')
        spec.input('relax', valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help='Relax positions and cell before the scan; without it the scan scales the input structure.')
        spec.input('relax_settings', valid_type=orm.Dict, required=False, validator=validate_relax_settings,
                   help='pressure (GPa), fmax (eV/Å), steps (initial relaxation), scan_steps (at each fixed volume), '
                        'optimizer (FIRE|BFGS), threads (PyTorch threads per job); defaults of the ase eos task.')
        spec.input('reference_eos', valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help='Also scan with the reference (own relaxations); else the reference curve is the reference '
                        'energies of the potential geometries.')
        spec.input('energy_zero', valid_type=orm.Str, default=lambda: orm.Str('alpha_quartz'),
                   help='Phase whose E0 is the zero of the relative energies (else the lowest reference E0).')
        spec.input('run_vdos', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='Also run a VDOSWorkChain per phase of `vdos.phases` (insets of the figure).')
        spec.input_namespace('vdos', help='Inputs of the VDOS runs (used when `run_vdos`).')
        spec.input('vdos.parameters', valid_type=orm.Dict, required=False, validator=validate_vdos_parameters,
                   help='MD settings of VDOSWorkChain (temperature, steps, timestep, supercell, ...).')
        spec.input('vdos.phases', valid_type=orm.List, required=False, help='Phases to run the VDOS for (default: all).')
        spec.input('options', valid_type=dict, non_db=True, required=False,
                   help='metadata.options of every AseCalculation (e.g. max_wallclock_seconds).')
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures',),
                           namespace_options={'help': 'The reference engine that labels the potential\'s geometries '
                                                      '(any registered engine: oracle, cp2k, vasp, ...).'})
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            cls.run_scans,
            cls.inspect_scans,
            cls.run_labels,
            cls.inspect_labels,
            cls.tabulate,
        )
        spec.output_namespace('tables', valid_type=orm.Dict, dynamic=True,
                              help='Per potential: the comparison table (phases -> row; columns, units, energy zero).')
        spec.output_namespace('curves', valid_type=orm.ArrayData, dynamic=True,
                              help='Per potential: E(V) per atom of the potential, the reference and the same-geometry labels.')
        spec.output_namespace('figures', valid_type=orm.SinglefileData, dynamic=True, required=False,
                              help='Per potential: the E–V grid (PNG), VDOS insets with run_vdos.')
        spec.exit_code(401, 'ERROR_POTENTIAL_SCAN_FAILED', message='The E(V) scan failed completely for potential(s) {labels}.')
        spec.exit_code(402, 'ERROR_NO_REFERENCE', message='No reference energies for potential {label}: the label and '
                                                          'reference scan both failed.')
        spec.exit_code(403, 'ERROR_SOME_PHASES_FAILED', message='Outputs made, but some phases failed: {phases}')

    @classmethod
    def get_builder_from_protocol(cls, code, potentials: dict, reference: str = 'oracle', polymorphs=None,
                                  protocol: str | None = None, overrides: dict | None = None, options: dict | None = None,
                                  reference_code=None):
        """A builder for the polymorph library (all eleven phases when ``polymorphs`` is None).

        :param potentials: ``{label: DeepPotentialData}`` (e.g. ``{'LP': ..., 'HP': ...}``); None when a parent
            work chain makes them.
        :param reference: the reference engine (any registered one); engines that cannot relax crystals here
            (cp2k, vasp) give the reference energies at the potential's geometries only (``reference_eos`` off).
        :param reference_code: the engine's code; default ``<reference>@<computer of code>`` as ``aiida-liqcryst
            setup`` registers it.
        :param polymorphs: names of the polymorph library (aliases like 'alpha-quartz' are accepted).
        """
        from aiida_liqcryst.structures import polymorphs as library

        engine = get_engine(reference)  # an unknown engine is refused, with the registered ones listed
        inputs = cls.get_protocol_inputs(protocol, overrides)
        names = [library.normalize_name(n) for n in (polymorphs or library.POLYMORPHS)]
        if reference_code is None:
            reference_code = default_code(reference, code)
        builder = cls.get_builder()
        builder.code = code
        if potentials:  # None or {}: a parent that makes them sets them (StudyWorkChain)
            builder.potentials = dict(potentials)
        builder.structures = {n: library.as_structure_data(n, primitive=inputs['primitive']) for n in names}
        builder.volume_range = orm.List(inputs['volume_range'])
        builder.number_of_points = orm.Int(inputs['number_of_points'])
        builder.relax = orm.Bool(inputs['relax'])
        builder.relax_settings = orm.Dict(inputs['relax_settings'])
        # the reference's own scan needs an engine that relaxes crystals; the others label the potential's geometries
        builder.reference_eos = orm.Bool(inputs['reference_eos'] and engine.ase_calculator is not None)
        elements = sorted({element for structure in builder.structures.values() for element in structure.get_symbols_set()})
        builder.label = LabelWorkChain.get_builder_from_protocol(
            reference_code, None, reference, elements, protocol=inputs.get('label_protocol'),
            overrides=inputs.get('label_overrides'))._inputs(prune=True)
        builder.energy_zero = orm.Str(inputs['energy_zero'])
        builder.run_vdos = orm.Bool(inputs['run_vdos'])
        vdos = inputs.get('vdos', {})
        builder.vdos.parameters = orm.Dict(vdos.get('parameters', {}))
        phases = [p for p in (vdos.get('phases') or names) if p in names]
        builder.vdos.phases = orm.List(phases)
        if options:
            builder.options = options
        return builder

    def setup(self):
        settings = self.inputs.relax_settings.get_dict() if 'relax_settings' in self.inputs else {}
        self.ctx.eos_settings = {
            'task': 'eos', 'relax': self.inputs.relax.value,
            'volume_fractions': volume_fractions(self.inputs.volume_range.get_list(), self.inputs.number_of_points.value),
            **settings,
        }
        self.ctx.labels = list(self.inputs.potentials)
        self.ctx.failed_phases = set()

    def _ase(self, structures: dict, settings: dict, potential=None, label: str = ''):
        return AseCalculation.get_task_builder(self.inputs.code, structures, settings, potential,
                                               self.inputs.get('options'), label)

    def run_scans(self):
        structures = dict(self.inputs.structures)
        futures = {}
        for label in self.ctx.labels:
            futures[f'eos_{label}'] = self.submit(self._ase(structures, self.ctx.eos_settings, self.inputs.potentials[label], f'eos_{label}'))
        if self.inputs.reference_eos.value:
            futures['eos_reference'] = self.submit(self._ase(structures, self.ctx.eos_settings, label='eos_reference'))
        if self.inputs.run_vdos.value:
            phases = self.inputs.vdos.phases.get_list() if 'phases' in self.inputs.vdos else list(structures)
            for phase in phases:
                builder = VDOSWorkChain.get_builder()
                builder.code = self.inputs.code
                builder.structure = structures[phase]
                builder.potentials = dict(self.inputs.potentials)
                if 'parameters' in self.inputs.vdos:
                    builder.parameters = self.inputs.vdos.parameters
                if 'options' in self.inputs:
                    builder.options = self.inputs.options
                builder.metadata.call_link_label = f'vdos_{phase}'
                futures[f'vdos_{phase}'] = self.submit(builder)
        for key, node in futures.items():
            self.report(f'{key}: {node.process_label}<{node.pk}>')
        return ToContext(**futures)

    def _results(self, node) -> dict:
        """The per-structure result arrays a finished AseCalculation produced (partial on exit code 310)."""
        if not node.is_finished or 'results' not in node.outputs:
            return {}
        return dict(node.outputs.results)

    def inspect_scans(self):
        failed = []
        for label in self.ctx.labels:
            node = self.ctx[f'eos_{label}']
            results = self._results(node)
            missing = sorted(set(self.inputs.structures) - set(results))
            if not results:
                self.report(f'{label}: the E(V) scan failed for every structure ({node.process_label}<{node.pk}>, '
                            f'exit status {node.exit_status})')
                failed.append(label)
            elif missing:
                self.report(f'{label}: the E(V) scan failed for {missing}: {node.exit_message}')
                self.ctx.failed_phases.update(missing)
        if 'eos_reference' in self.ctx:
            node = self.ctx.eos_reference
            missing = sorted(set(self.inputs.structures) - set(self._results(node)))
            if missing:
                self.report(f'reference: the E(V) scan failed for {missing} (exit status {node.exit_status}); '
                            'those phases fall back to the reference labels of the potential geometries')
        self.ctx.labels = [label for label in self.ctx.labels if label not in failed]
        self.ctx.failed_potentials = failed
        if not self.ctx.labels:
            return self.exit_codes.ERROR_POTENTIAL_SCAN_FAILED.format(labels=', '.join(failed))
        return None

    def run_labels(self):
        """The reference engine's labels of exactly the geometries of each potential's scan (LabelWorkChain)."""
        futures = {}
        for label in self.ctx.labels:
            inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
            inputs.structures = eos_geometries(**self._results(self.ctx[f'eos_{label}']))
            inputs.metadata = {'call_link_label': f'label_{label}'}
            futures[f'label_{label}'] = self.submit(LabelWorkChain, **inputs)
            self.report(f'{label}: {inputs.engine.value} labels of {len(inputs.structures)} geometries: '
                        f'<{futures[f"label_{label}"].pk}>')
        return ToContext(**futures)

    def _labels(self, label: str) -> dict:
        """The reference labels (key ``<phase>_p<k>`` -> ArrayData) of potential ``label``'s geometries."""
        node = self.ctx[f'label_{label}']
        return dict(node.outputs[LABELS_OUTPUT]) if LABELS_OUTPUT in node.outputs else {}

    def inspect_labels(self):
        for label in self.ctx.labels:
            node = self.ctx[f'label_{label}']
            if not node.is_finished_ok:
                self.report(f'{label}: the reference labels failed ({node.process_label}<{node.pk}>, '
                            f'exit status {node.exit_status}): {node.exit_message}')
                if 'eos_reference' not in self.ctx:
                    return self.exit_codes.ERROR_NO_REFERENCE.format(label=label)
            elif node.outputs.failed.get_list():
                self.report(f'{label}: no reference label for {node.outputs.failed.get_list()}: those curves lack points')
        return None

    def tabulate(self):
        """One table, E(V) arrays and figure per potential. A Birch–Murnaghan fit that fails (a potential whose
        E(V) has no minimum in the range, as LP-DeePMD for the octahedral phases) is a result, not a failure:
        the table holds None there and says why."""
        reference = self._results(self.ctx.eos_reference) if 'eos_reference' in self.ctx else {}
        titles = {}
        for phase in self.inputs.structures:
            try:
                titles[phase] = POLYMORPHS[normalize_name(phase)].label
            except ValueError:
                titles[phase] = phase
        for label in self.ctx.labels:
            nodes = {f'eos_{p}': n for p, n in self._results(self.ctx[f'eos_{label}']).items()}
            nodes.update({f'reference_{p}': n for p, n in reference.items()})
            nodes.update({f'label_{k}': n for k, n in self._labels(label).items()})
            for phase in self.inputs.structures:
                vdos = self.ctx.get(f'vdos_{phase}')
                if vdos is not None:
                    if vdos.is_finished_ok:
                        nodes[f'vdos_{phase}'] = vdos.outputs.spectra
                    else:
                        self.report(f'{phase}: the VDOS run failed (exit status {vdos.exit_status}); no inset')
            parameters = orm.Dict({
                'potential': label, 'reference': self.inputs.label.engine.value,
                'energy_zero': self.inputs.energy_zero.value, 'titles': titles,
            })
            outputs = tabulate_eos(parameters=parameters, **nodes)
            self.out(f'tables.{label}', outputs['table'])
            self.out(f'curves.{label}', outputs['curves'])
            if 'figure' in outputs:
                self.out(f'figures.{label}', outputs['figure'])
            table = outputs['table'].get_dict()
            for phase, row in table['phases'].items():
                self.report(
                    f'{label} {phase}: V0 {_fmt(row["v0_potential"])} vs {_fmt(row["v0_reference"])} Å^3/atom '
                    f'({_fmt(row["delta_v0_percent"], "+.1f")} %), B0 {_fmt(row["b0_potential"], ".0f")} vs '
                    f'{_fmt(row["b0_reference"], ".0f")} GPa, E-E({table["energy_zero"]}) '
                    f'{_fmt(row["relative_energy_potential"], ".0f")} vs {_fmt(row["relative_energy_reference"], ".0f")} '
                    f'meV/atom, curve RMSE {_fmt(row["curve_rmse"], ".1f")} meV/atom'
                    + (f'; {"; ".join(row["errors"])}' if row['errors'] else '')
                )
        if self.ctx.failed_potentials:
            return self.exit_codes.ERROR_POTENTIAL_SCAN_FAILED.format(labels=', '.join(self.ctx.failed_potentials))
        if self.ctx.failed_phases:
            return self.exit_codes.ERROR_SOME_PHASES_FAILED.format(phases=', '.join(sorted(self.ctx.failed_phases)))
        return None
