"""EvoSearchWorkChain: evolutionary crystal-structure search with a DeePMD potential, checked against the reference
(paper Fig. 3–4, done there with USPEX).

Each generation: a calcfunction makes the candidates (random symmetric crystals, heredity, mutations:
:mod:`aiida_liqcryst.evolution`), one batched ``relax`` AseCalculation relaxes all of them (positions + cell at the
target pressure, the potential as calculator), a calcfunction ranks them by enthalpy per atom and removes duplicates.
At the end the reference engine (``label`` namespace: LabelWorkChain, any registered engine) re-computes the energies
of the top-K structures and of a random sample of the others at the potential's relaxed geometries, and the best
structure is compared with the polymorph library by partial RDFs.
"""

from __future__ import annotations

import math
import tempfile

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida.plugins import CalculationFactory

from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
from aiida_liqcryst.evolution import operators, population
from aiida_liqcryst.protocols import ProtocolMixin
from aiida_liqcryst.reference import default_code, get_engine
from aiida_liqcryst.validators import json_safe, task_settings_validator
from aiida_liqcryst.workflows.label import LABELS_OUTPUT, LabelWorkChain

AseCalculation = CalculationFactory('liqcryst.ase')

RELAX_KEYS = ('fmax', 'steps', 'optimizer', 'threads')  # pressure comes from `pressure`, the cell always relaxes
DEFAULT_FRACTIONS = {'heredity': 0.5, 'mutation': 0.3, 'random': 0.2}
REPORTED_SYMPREC = 0.1  # the space group quoted in reports and the ranking (all tolerances are stored)
TOLERATED_RELAX_EXIT = (0, 310, 311)  # some or all structures failed: recorded, the search goes on
RELABEL_LINK = 'relabel'  # call link label of the re-labeling LabelWorkChain


# ----------------------------------------------------------------------------------------------- validators
def _check(check, label):
    def validator(value, _):
        if value is None:
            return None
        try:
            check(value)
        except ValueError as exc:
            return f'`{label}`: {exc}'
        return None

    return validator


validate_composition = _check(lambda v: operators.check_composition(v.get_dict()), 'composition')
validate_formula_units = _check(lambda v: operators.check_formula_units(v.get_list()), 'formula_units')
validate_fractions = _check(lambda v: operators.check_fractions(v.get_dict()), 'fractions')
validate_variation = _check(lambda v: population.check_variation_settings(v.get_dict()), 'variation')


def _positive(label, minimum, kind='integer'):
    def validator(value, _):
        if value is not None and not (math.isfinite(value.value) and value.value >= minimum):
            return f'`{label}` must be a{"n" if kind[0] in "aeiou" else ""} {kind} >= {minimum}, got {value.value}'
        return None

    return validator


validate_relax_settings = task_settings_validator('relax_settings', RELAX_KEYS, {'task': 'relax'}, hint=' (the pressure is `pressure`)')


def validate_pressure(value, _):
    if value is not None and not math.isfinite(value.value):
        return f'`pressure` must be finite (GPa), got {value.value}'
    return None


def validate_window(value, _):
    if value is not None and not (math.isfinite(value.value) and value.value > 0):
        return f'`relabel.window` must be > 0 eV/atom, got {value.value}'
    return None


def validate_inputs(inputs, _):
    if 'composition' in inputs and 'potential' in inputs:
        type_map = inputs['potential'].base.attributes.get('type_map', None) or []
        unknown = sorted(set(inputs['composition'].get_dict()) - set(type_map))
        if type_map and unknown:
            return f'`composition`: elements {unknown} are not in the type_map {type_map} of `potential`'
    if inputs.get('relabel', {}).get('run', orm.Bool(True)).value and 'engine' not in inputs.get('label', {}):
        return ('`label`: re-labeling (`relabel.run`) needs the reference engine: give label.engine, label.code and '
                'label.type_map (get_builder_from_protocol fills them in), or set relabel.run False')
    return None


# ------------------------------------------------------------------------------------------- calcfunctions
def _atoms(structure):
    atoms = structure.get_ase()
    atoms.pbc = True
    return atoms


def _prefixed(kwargs: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in kwargs.items() if k.startswith(prefix)}


@calcfunction
def create_generation(composition: orm.Dict, formula_units: orm.List, population_size: orm.Int, fractions: orm.Dict,
                      variation: orm.Dict, seed: orm.Int, generation: orm.Int, **pool):
    """The candidates of generation ``generation``: ``g<gen>_c<k>`` StructureData and ``origin`` (Dict).

    ``pool``: ``table`` (the ranking Dict of :func:`update_pool`, absent for the first generation) and
    ``parent_<key>`` StructureData: the current population, parents of heredity and mutations. The random numbers
    come from ``numpy.random.default_rng([seed, generation])``: the same inputs give the same candidates.
    ``origin[key]``: operator (random, heredity, strain, permutation, rattle), parents, operator details.
    """
    gen = generation.value
    rng = np.random.default_rng([seed.value, gen])
    parents = []
    if 'table' in pool:
        rows = pool['table'].get_dict()['structures']
        for key, structure in _prefixed(pool, 'parent_').items():
            parents.append((key, _atoms(structure), rows[key]['enthalpy']))
    children = population.make_offspring(
        parents, population_size.value, composition.get_dict(), tuple(formula_units.get_list()), fractions.get_dict(),
        rng, variation.get_dict(),
    )
    outputs, origin = {}, {}
    for k, child in enumerate(children):
        key = f'g{gen:02d}_c{k:02d}'
        outputs[key] = orm.StructureData(ase=child['atoms'])
        origin[key] = {'operator': child['operator'], 'parents': child['parents'],
                       'info': {i: v for i, v in child['info'].items() if i != 'operator'}}
    outputs['origin'] = orm.Dict({'generation': gen, 'candidates': origin})
    return outputs


@calcfunction
def update_pool(parameters: orm.Dict, origin: orm.Dict, summary: orm.Dict, **structures):
    """Rank the relaxed candidates of one generation together with the unique structures found before.

    ``structures``: ``new_<key>`` (relaxed candidates of the relax AseCalculation), ``pool_<key>`` (unique structures
    of earlier generations) and ``table`` (the previous output ``table``). ``summary``: the calculation's
    output_parameters (per structure status, energy, enthalpy, natoms, volume). ``parameters``: ``pressure``,
    ``duplicate_tolerance`` (eV/atom), ``collapse_ratio`` (of the covalent radius sum of each pair).

    A candidate is dropped (and listed) when its relaxation failed, its enthalpy is not finite or two atoms came
    closer than ``collapse_ratio`` × the sum of their covalent radii (a collapsed cell, often in a hole of the
    potential). Duplicates: :func:`aiida_liqcryst.evolution.population.
    remove_duplicates`. Outputs ``table`` (Dict: ``ranked`` keys and per key ``enthalpy``, ``energy`` (eV/atom),
    ``volume`` (Å³/atom), ``natoms``, ``generation``, ``operator``, ``parents``, ``space_groups`` per tolerance,
    ``space_group`` (at 0.1 Å), ``si_coordination``) and ``generation`` (Dict: the generation's counts, failures,
    duplicates, its best and the best so far).
    """
    from aiida_liqcryst.evolution.analysis import si_coordination

    params = parameters.get_dict()
    previous = structures.pop('table').get_dict()['structures'] if 'table' in structures else {}
    gen = origin['generation']
    candidates = origin['candidates']
    entries, rows = [], {}
    for key, structure in _prefixed(structures, 'pool_').items():
        entries.append((key, _atoms(structure), previous[key]['enthalpy']))
        rows[key] = previous[key]
    failed, rejected, new_enthalpy = {}, {}, {}
    elements = {e for s in structures.values() for e in s.get_symbols_set()}
    blmin = operators.closest_distances(sorted(elements), params['collapse_ratio'])
    relaxed = _prefixed(structures, 'new_')
    status = summary.get_dict().get('structures', {})
    for key in candidates:
        entry = status.get(key, {})
        if entry.get('status') != 'ok' or key not in relaxed:
            failed[key] = entry.get('error') or f'status {entry.get("status")!r}'
            continue
        atoms = _atoms(relaxed[key])
        natoms = len(atoms)
        enthalpy = entry.get('enthalpy')
        if enthalpy is None or not math.isfinite(enthalpy):
            rejected[key] = 'non-finite enthalpy'
            continue
        contact = operators.closest_contact(atoms, blmin)
        if contact is not None and contact['ratio'] < 1.0:
            rejected[key] = (f'collapsed: {contact["pair"]} at {contact["distance"]:.2f} Å < {contact["limit"]:.2f} Å, '
                             f'enthalpy {enthalpy / natoms:.3f} eV/atom')
            continue
        entries.append((key, atoms, enthalpy / natoms))
        rows[key] = {
            'enthalpy': enthalpy / natoms, 'energy': entry['energy'] / natoms, 'volume': entry['volume'] / natoms,
            'natoms': natoms, 'generation': gen, 'operator': candidates[key]['operator'],
            'parents': candidates[key]['parents'], 'relax_steps': entry.get('steps'), 'converged': entry.get('converged'),
            'space_groups': population.space_groups(atoms), 'si_coordination': si_coordination(atoms),
        }
        rows[key]['space_group'] = population.space_group_label(rows[key]['space_groups'], REPORTED_SYMPREC)
        new_enthalpy[key] = enthalpy / natoms
    unique, duplicates = population.remove_duplicates(entries, params['duplicate_tolerance'], known_unique=list(previous))
    rows = {key: rows[key] for key in unique}
    generation_best = min(new_enthalpy, key=new_enthalpy.get, default=None)
    # the space group of the generation's best: its own, or that of the older structure it duplicates
    same_as = duplicates.get(generation_best, generation_best)
    best = unique[0] if unique else None
    table = {'ranked': unique, 'structures': rows, 'pressure': params['pressure'], 'units': {
        'enthalpy': 'eV/atom', 'energy': 'eV/atom', 'volume': 'Å^3/atom'}}
    report = {
        'generation': gen, 'candidates': len(candidates), 'relaxed': len(candidates) - len(failed),
        'failed': failed, 'rejected': rejected, 'duplicates': {k: v for k, v in duplicates.items() if k in candidates},
        # earlier structures superseded by a new duplicate of lower enthalpy
        'replaced': {k: v for k, v in duplicates.items() if k not in candidates},
        'unique_new': sum(1 for k in unique if k in candidates), 'unique_total': len(unique),
        'generation_best': generation_best,
        'generation_best_enthalpy': new_enthalpy.get(generation_best),
        'generation_best_space_group': rows[same_as]['space_group'] if same_as in rows else None,
        'best': best, 'best_enthalpy': rows[best]['enthalpy'] if best else None,
        'best_space_group': rows[best]['space_group'] if best else None,
        'operators': {k: v['operator'] for k, v in candidates.items()},
    }
    return {'table': orm.Dict(table), 'generation': orm.Dict(report)}


@calcfunction
def relabel_analysis(parameters: orm.Dict, table: orm.Dict, **labels):
    """Potential vs reference energies of the re-labeled relaxed structures (paper Fig. 3).

    ``labels``: ``label_<key>``, the reference engine's label (ArrayData: energy, forces) of each re-labeled
    structure; ``table``: the final ranking (potential energy and enthalpy per atom); ``parameters``: ``window``
    (eV/atom), ``top`` (keys of the top-K), ``relabeled`` (keys sent to the reference). Metrics: :func:`aiida_liqcryst.evolution.analysis.relabel_metrics` (energies per atom, not aligned; the
    window holds the structures within ``window`` eV/atom of the lowest potential enthalpy among the re-labeled).
    Outputs ``metrics`` (Dict), ``energies`` (ArrayData: potential, reference, enthalpy per atom, is_top, with
    ``keys`` in the metrics) and ``plot`` (PNG with the error histogram inset).
    """
    from aiida_liqcryst.evolution.analysis import relabel_metrics, relabel_plot

    params = parameters.get_dict()
    rows = table.get_dict()['structures']
    per_atom = {}
    for name, node in labels.items():
        energy, natoms = float(node.get_array('energy')[0]), len(node.get_array('forces'))
        if math.isfinite(energy):
            per_atom[name.removeprefix('label_')] = energy / natoms
    keys = [k for k in table.get_dict()['ranked'] if k in per_atom]
    missing = sorted(set(params.get('relabeled', [])) - set(keys))
    if len(keys) < 2:
        return {'metrics': orm.Dict({'error': f'fewer than two re-labeled structures ({keys}); failed: {missing}'})}
    pot = np.array([rows[k]['energy'] for k in keys])
    ref = np.array([per_atom[k] for k in keys])
    enthalpy = np.array([rows[k]['enthalpy'] for k in keys])
    top = np.array([k in params['top'] for k in keys])
    metrics = relabel_metrics(pot, ref, enthalpy, window=params['window'])
    metrics.update(keys=keys, failed=missing, units='eV/atom', compared='energy per atom of the same relaxed geometry',
                   alignment='none (mean_difference and rmse_aligned give the offset and the RMSE without it)')
    metrics = json_safe(metrics)
    arrays = orm.ArrayData()
    for name, values in (('potential', pot), ('reference', ref), ('enthalpy', enthalpy), ('is_top', top)):
        arrays.set_array(name, values)
    with tempfile.TemporaryDirectory() as tmp:
        path = relabel_plot(f'{tmp}/relabel.png', ref, pot, highlight=top)
        plot = orm.SinglefileData(path, filename='relabel_correlation.png')
    return {'metrics': orm.Dict(metrics), 'energies': arrays, 'plot': plot}


@calcfunction
def compare_best(structure: orm.StructureData):
    """Partial RDFs of ``structure`` vs the most similar library polymorph (paper Fig. 4).

    Outputs ``comparison`` (Dict: closest polymorph, similarity, all similarities; see
    :func:`aiida_liqcryst.evolution.analysis.compare_with_polymorphs`) and ``rdfs`` (ArrayData: ``r``,
    ``found_<pair>``, ``polymorph_<pair>`` with pair Si-Si, Si-O, O-O written SiSi, SiO, OO).
    """
    from aiida_liqcryst.evolution.analysis import compare_with_polymorphs

    result = compare_with_polymorphs(_atoms(structure))
    arrays = orm.ArrayData()
    arrays.set_array('r', result['r'])
    for pair, g in result['rdfs'].items():
        arrays.set_array(f'found_{pair.replace("-", "")}', g)
        arrays.set_array(f'polymorph_{pair.replace("-", "")}', result['polymorph_rdfs'][pair])
    comparison = {k: result[k] for k in ('closest', 'similarity', 'similarities')}
    comparison['method'] = 'cosine of (g-1), Si-Si/Si-O/O-O averaged, 0.15 Å smearing, polymorph scaled to the same volume per atom'
    return {'comparison': orm.Dict(json_safe(comparison)), 'rdfs': arrays}


@calcfunction
def summarize_search(parameters: orm.Dict, table: orm.Dict, **nodes):
    """The search in one Dict: per generation the counts and bests, the best history, the stop reason, the best
    structure, and the relaxation throughput. ``nodes``: ``generation_<g>`` (update_pool's reports),
    ``relax_<g>`` (the relax calculations' output_parameters); ``parameters``: ``stop_reason``."""
    generations = [nodes[k].get_dict() for k in sorted(k for k in nodes if k.startswith('generation_'))]
    relaxations, seconds, cpu = 0, 0.0, 0.0
    for key in (k for k in nodes if k.startswith('relax_')):
        for entry in nodes[key].get_dict().get('structures', {}).values():
            relaxations += entry.get('status') in ('ok', 'failed')
            seconds += entry.get('seconds') or 0.0
            cpu += entry.get('cpu_seconds') or 0.0
    data = table.get_dict()
    best = data['ranked'][0] if data['ranked'] else None
    row = data['structures'].get(best, {})
    summary = {
        'stop_reason': parameters['stop_reason'],
        'generations': generations,
        'best_history': [g['best_enthalpy'] for g in generations],
        'best': best, 'best_enthalpy': row.get('enthalpy'), 'best_space_group': row.get('space_group'),
        'best_space_groups': row.get('space_groups'), 'best_si_coordination': row.get('si_coordination'),
        'unique_structures': len(data['ranked']), 'relaxations': relaxations,
        'relaxation_seconds': round(seconds, 3), 'relaxation_cpu_seconds': round(cpu, 3),
        'relaxations_per_minute': round(60.0 * relaxations / seconds, 3) if seconds > 0 else None,
        'pressure': data['pressure'], 'units': data['units'],
    }
    return orm.Dict(json_safe(summary))



# ----------------------------------------------------------------------------------------------- work chain
class EvoSearchWorkChain(ProtocolMixin, WorkChain):
    """Evolutionary crystal-structure search with a DeePMD potential at a given pressure, checked with the reference.

    Generation 0 is ``population_size`` random symmetric crystals (pyxtal) of ``formula_units`` = [min, max]
    formula units of ``composition``. Each later generation has ``population_size`` children of the current
    population (the best ``population_size`` unique structures found so far): ``fractions.heredity`` by
    cut-and-splice of two parents, ``fractions.mutation`` by lattice strain, atom permutation or rattle, the rest
    random newcomers; parents are drawn by linear ranking from the best ``variation.selection_fraction``.
    All candidates of a generation are relaxed (positions and cell at ``pressure``) in one ``relax``
    AseCalculation with the potential; fitness = enthalpy per atom (eV/atom), lower is better; duplicates are removed
    with pymatgen's StructureMatcher. A relaxation that fails, or a structure that collapses (two atoms closer than
    ``variation.collapse_ratio`` × their covalent radius sum, typically a hole of the potential), is recorded in the
    generation report and skipped. The search stops after
    ``generations`` generations, or earlier when the best enthalpy has not dropped by more than
    ``stagnation_tolerance`` over ``stagnation_generations`` generations.

    Then the reference engine (``label``: a LabelWorkChain) computes the energies of the ``relabel.top_k`` best and of
    ``relabel.random_sample`` others drawn at random (relaxed geometries): Pearson r, RMSE over all and in the
    window of ``relabel.window`` eV/atom above the best potential enthalpy (energies per atom, not aligned), the
    correlation plot with an error histogram inset. The best structure's partial RDFs are compared with the
    polymorph library. Every candidate, relaxed structure, ranking and report is a node; random numbers come from
    ``seed`` (and the generation number), so a search is reproducible.
    """

    _protocol_file = 'evo_search'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, help='The `aiida-liqcryst-ase` code (relaxations and labels).')
        spec.input('potential', valid_type=DeepPotentialData, help='The DeePMD potential the search relaxes with.')
        spec.input('composition', valid_type=orm.Dict, validator=validate_composition,
                   help="Atoms per formula unit, e.g. {'Si': 1, 'O': 2}; every element must be in the potential's type_map.")
        spec.input('formula_units', valid_type=orm.List, default=lambda: orm.List([2, 4]), validator=validate_formula_units,
                   help='[min, max] formula units per cell of random crystals (heredity keeps the parents\' size).')
        spec.input('pressure', valid_type=orm.Float, default=lambda: orm.Float(0.0), validator=validate_pressure,
                   help='Pressure (GPa) of the relaxations and of the enthalpy H = E + PV.')
        spec.input('population_size', valid_type=orm.Int, default=lambda: orm.Int(8),
                   validator=_positive('population_size', 2),
                   help='Candidates per generation and size of the population the parents are drawn from (>= 2).')
        spec.input('generations', valid_type=orm.Int, default=lambda: orm.Int(5), validator=_positive('generations', 1),
                   help='Largest number of generations (the first is random).')
        spec.input('stagnation_generations', valid_type=orm.Int, default=lambda: orm.Int(3),
                   validator=_positive('stagnation_generations', 0),
                   help='Stop when the best enthalpy has not improved over this many generations (0: never).')
        spec.input('stagnation_tolerance', valid_type=orm.Float, default=lambda: orm.Float(0.001),
                   validator=_positive('stagnation_tolerance', 0, 'number'),
                   help='Improvement of the best enthalpy (eV/atom) that counts for the stagnation rule.')
        spec.input('fractions', valid_type=orm.Dict, default=lambda: orm.Dict(DEFAULT_FRACTIONS), validator=validate_fractions,
                   help='Fractions of each generation made by heredity, mutation and random newcomers (sum 1).')
        spec.input('variation', valid_type=orm.Dict, default=lambda: orm.Dict({}), validator=validate_variation,
                   help='Operator settings (evolution.population.VARIATION_DEFAULTS): volume_factor, distance_ratio, '
                        'strain_sigma, permutation_fraction, rattle_strength, rattle_probability, selection_fraction, '
                        'collapse_ratio.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), validator=_positive('seed', 0),
                   help='Seed of every random choice of the search (operators, pyxtal, the re-label sample).')
        spec.input('relax_settings', valid_type=orm.Dict, default=lambda: orm.Dict({}), validator=validate_relax_settings,
                   help='fmax (eV/Å), steps, optimizer (FIRE|BFGS), threads of the relax task (ase_tasks.TASK_DEFAULTS).')
        spec.input('duplicate_tolerance', valid_type=orm.Float, default=lambda: orm.Float(0.05),
                   validator=_positive('duplicate_tolerance', 0, 'number'),
                   help='Structures whose enthalpies differ by more than this (eV/atom) are never duplicates.')
        spec.input_namespace('relabel', help='Re-labeling of found structures with the reference engine (`label`).')
        spec.input('relabel.run', valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help='Re-label with the reference engine of the `label` namespace.')
        spec.input('relabel.top_k', valid_type=orm.Int, default=lambda: orm.Int(5), validator=_positive('relabel.top_k', 1),
                   help='The K best unique structures are re-labeled.')
        spec.input('relabel.random_sample', valid_type=orm.Int, default=lambda: orm.Int(5),
                   validator=_positive('relabel.random_sample', 0),
                   help='Plus this many drawn at random from the other unique structures.')
        spec.input('relabel.window', valid_type=orm.Float, default=lambda: orm.Float(1.0), validator=validate_window,
                   help='Low-enthalpy window (eV/atom above the best potential enthalpy) of the windowed RMSE.')
        spec.input('options', valid_type=dict, non_db=True, required=False,
                   help='metadata.options of every AseCalculation (e.g. max_wallclock_seconds).')
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures',), namespace_options={
            'required': False, 'populate_defaults': False,
            'help': 'The reference engine that re-labels the found structures (with `relabel.run`).'})
        spec.inputs.validator = validate_inputs

        spec.outline(
            cls.setup,
            while_(cls.should_continue)(
                cls.generate,
                cls.run_relax,
                cls.inspect_relax,
            ),
            if_(cls.should_relabel)(
                cls.run_relabel,
                cls.inspect_relabel,
            ),
            cls.results,
        )
        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                              help='The unique relaxed structures, ranked: rank_000 is the best (extras: enthalpy_per_atom, '
                                   'space_group, rank, key).')
        spec.output('best_structure', valid_type=orm.StructureData, help='The structure of lowest enthalpy per atom.')
        spec.output('ranking', valid_type=orm.Dict,
                    help='Per structure key: enthalpy, energy (eV/atom), volume, space groups at 0.01/0.1/0.2 Å, Si '
                         'coordination, generation, operator, parents; `ranked` keys best first.')
        spec.output('summary', valid_type=orm.Dict,
                    help='Per generation counts and bests, best history, stop reason, best structure, relaxations per minute.')
        spec.output('relabel_metrics', valid_type=orm.Dict, required=False,
                    help='Pearson r, RMSE (all and low-enthalpy window), offset of the potential vs the reference.')
        spec.output('relabel_energies', valid_type=orm.ArrayData, required=False,
                    help='Potential and reference energies per atom of the re-labeled structures.')
        spec.output('relabel_plot', valid_type=orm.SinglefileData, required=False,
                    help='Correlation plot (PNG) with the error histogram inset (Fig. 3).')
        spec.output('polymorph_comparison', valid_type=orm.Dict, required=False,
                    help='RDF similarity of the best structure to each library polymorph and the closest one.')
        spec.output('rdfs', valid_type=orm.ArrayData, required=False,
                    help='Partial RDFs of the best structure and of the closest polymorph (Fig. 4).')
        spec.exit_code(401, 'ERROR_RELAX_FAILED', message='The relaxation job of generation {generation} failed: {message}')
        spec.exit_code(402, 'ERROR_NO_STRUCTURES', message='No candidate of generation 0 relaxed to a valid structure.')
        spec.exit_code(403, 'ERROR_RELABEL_FAILED',
                       message='The search finished, but the re-labeling with the reference failed: {message}')

    @classmethod
    def get_builder_from_protocol(cls, code, potential, composition: dict | None = None, pressure: float | None = None,
                                  protocol: str | None = None, overrides: dict | None = None, options: dict | None = None,
                                  reference: str = 'oracle', reference_code=None):
        """A builder from a protocol (``demo``, ``paper``); ``composition`` default SiO2, ``pressure`` in GPa;
        ``potential`` None when a parent work chain makes it.

        :param reference: the engine that re-labels the found structures (any registered one).
        :param reference_code: its code; default ``<reference>@<computer of code>`` as ``aiida-liqcryst setup``
            registers it.
        """
        get_engine(reference)  # an unknown engine is refused, with the registered ones listed
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.code = code
        if potential is not None:
            builder.potential = potential
        builder.composition = orm.Dict(composition or inputs.get('composition') or {'Si': 1, 'O': 2})
        builder.pressure = orm.Float(inputs.get('pressure', 0.0) if pressure is None else pressure)
        builder.formula_units = orm.List(inputs['formula_units'])
        builder.population_size = orm.Int(inputs['population_size'])
        builder.generations = orm.Int(inputs['generations'])
        builder.stagnation_generations = orm.Int(inputs['stagnation']['generations'])
        builder.stagnation_tolerance = orm.Float(inputs['stagnation']['tolerance'])
        builder.fractions = orm.Dict(inputs['fractions'])
        builder.variation = orm.Dict(inputs.get('variation', {}))
        builder.seed = orm.Int(inputs.get('seed', 0))
        builder.relax_settings = orm.Dict(inputs['relax_settings'])
        builder.duplicate_tolerance = orm.Float(inputs['duplicate_tolerance'])
        relabel = inputs['relabel']
        builder.relabel.run = orm.Bool(relabel['run'])
        builder.relabel.top_k = orm.Int(relabel['top_k'])
        builder.relabel.random_sample = orm.Int(relabel['random_sample'])
        builder.relabel.window = orm.Float(relabel['window'])
        if relabel['run']:
            if reference_code is None:
                reference_code = default_code(reference, code)
            builder.label = LabelWorkChain.get_builder_from_protocol(
                reference_code, None, reference, sorted(builder.composition.get_dict()),
                protocol=inputs.get('label_protocol'), overrides=inputs.get('label_overrides'))._inputs(prune=True)
        options = {**inputs.get('options', {}), **(options or {})}
        if options:
            builder.options = options
        return builder

    # ---------------------------------------------------------------------------------------------- steps
    def setup(self):
        self.ctx.generation = 0
        self.ctx.pool = {}  # key -> pk of the unique relaxed structures
        self.ctx.table = None  # pk of the latest ranking Dict
        self.ctx.history = []  # best enthalpy so far after each generation
        self.ctx.reports = []  # pks of the generation reports
        self.ctx.relax_summaries = []  # pks of the relax output_parameters
        self.ctx.stop_reason = 'maximum number of generations'
        variation = population.check_variation_settings(self.inputs.variation.get_dict())
        self.ctx.pool_parameters = {
            'pressure': self.inputs.pressure.value, 'duplicate_tolerance': self.inputs.duplicate_tolerance.value,
            'collapse_ratio': variation['collapse_ratio'],
        }

    def should_continue(self):
        if self.ctx.generation >= self.inputs.generations.value:
            return False
        k, tol = self.inputs.stagnation_generations.value, self.inputs.stagnation_tolerance.value
        if population.stagnated(self.ctx.history, k, tol):
            self.ctx.stop_reason = f'stagnation: no improvement > {tol} eV/atom in {k} generations'
            self.report(f'stopping after {self.ctx.generation} generations: {self.ctx.stop_reason}')
            return False
        return True

    def _population(self) -> dict:
        """The current population: the best ``population_size`` unique structures."""
        if self.ctx.table is None:
            return {}
        ranked = orm.load_node(self.ctx.table).get_dict()['ranked'][: self.inputs.population_size.value]
        return {f'parent_{k}': orm.load_node(self.ctx.pool[k]) for k in ranked}

    def generate(self):
        pool = self._population()
        if pool:
            pool['table'] = orm.load_node(self.ctx.table)
        outputs = create_generation(
            composition=self.inputs.composition, formula_units=self.inputs.formula_units,
            population_size=self.inputs.population_size, fractions=self.inputs.fractions,
            variation=self.inputs.variation, seed=self.inputs.seed, generation=orm.Int(self.ctx.generation),
            **pool,
        )
        self.ctx.origin = outputs['origin'].pk
        self.ctx.candidates = {k: v.pk for k, v in outputs.items() if k != 'origin'}

    def _submit_ase(self, structures: dict, settings: dict, link_label: str, potential=None):
        """One AseCalculation over ``structures`` (pks): relaxations with ``potential``, or reference labels."""
        structures = {k: orm.load_node(pk) for k, pk in structures.items()}
        return self.submit(AseCalculation.get_task_builder(self.inputs.code, structures, settings, potential,
                                                           self.inputs.get('options'), link_label))

    def run_relax(self):
        settings = {'task': 'relax', 'pressure': self.inputs.pressure.value, 'cell': True, **self.inputs.relax_settings.get_dict()}
        node = self._submit_ase(self.ctx.candidates, settings, f'relax_{self.ctx.generation:02d}', self.inputs.potential)
        self.report(f'generation {self.ctx.generation}: relaxing {len(self.ctx.candidates)} candidates in '
                    f'{node.process_label}<{node.pk}>')
        return ToContext(relax=node)

    def inspect_relax(self):
        node = self.ctx.relax
        gen = self.ctx.generation
        if not node.is_finished or node.exit_status not in TOLERATED_RELAX_EXIT or 'output_parameters' not in node.outputs:
            return self.exit_codes.ERROR_RELAX_FAILED.format(
                generation=gen, message=f'{node.process_label}<{node.pk}> exit status {node.exit_status}: {node.exit_message}'
            )
        nodes = {f'new_{k}': v for k, v in node.outputs.structures.items()} if 'structures' in node.outputs else {}
        nodes.update({f'pool_{k}': orm.load_node(pk) for k, pk in self.ctx.pool.items()})
        if self.ctx.table is not None:
            nodes['table'] = orm.load_node(self.ctx.table)
        outputs = update_pool(
            parameters=orm.Dict(self.ctx.pool_parameters), origin=orm.load_node(self.ctx.origin),
            summary=node.outputs.output_parameters, **nodes,
        )
        table, report = outputs['table'], outputs['generation'].get_dict()
        relaxed = dict(node.outputs.structures) if 'structures' in node.outputs else {}
        self.ctx.pool = {k: (self.ctx.pool[k] if k in self.ctx.pool else relaxed[k].pk) for k in table['ranked']}
        self.ctx.table = table.pk
        self.ctx.reports.append(outputs['generation'].pk)
        self.ctx.relax_summaries.append(node.outputs.output_parameters.pk)
        if not table['ranked']:
            return self.exit_codes.ERROR_NO_STRUCTURES
        self.ctx.history.append(report['best_enthalpy'])
        gen_best = report['generation_best_enthalpy']
        gen_group = report['generation_best_space_group']
        self.report(
            f'generation {gen}: {report["relaxed"]}/{report["candidates"]} relaxed, {len(report["rejected"])} rejected, '
            f'{report["unique_new"]} new unique, {report["unique_total"]} unique in all; best of generation '
            + (f'{gen_best:.4f} eV/atom ({gen_group})' if gen_best is not None else 'none')
            + f'; best so far {report["best_enthalpy"]:.4f} eV/atom, {report["best_space_group"]} ({report["best"]})'
        )
        self.ctx.generation += 1
        return None

    def should_relabel(self):
        return self.inputs.relabel.run.value

    def run_relabel(self):
        ranked = orm.load_node(self.ctx.table).get_dict()['ranked']
        top = ranked[: self.inputs.relabel.top_k.value]
        rest = ranked[len(top):]
        rng = np.random.default_rng([self.inputs.seed.value, 1_000_000])  # not a generation number
        sample = sorted(rng.choice(rest, size=min(len(rest), self.inputs.relabel.random_sample.value), replace=False).tolist()) \
            if rest else []
        self.ctx.relabel_top = top
        self.ctx.relabeled = top + sample
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.structures = {k: orm.load_node(self.ctx.pool[k]) for k in top + sample}
        inputs.metadata = {'call_link_label': RELABEL_LINK}
        node = self.submit(LabelWorkChain, **inputs)
        self.report(f're-labeling {len(top)} best + {len(sample)} random structures with {inputs.engine.value}: '
                    f'{node.process_label}<{node.pk}>')
        return ToContext(relabel=node)

    def inspect_relabel(self):
        node = self.ctx.relabel
        if not node.is_finished or LABELS_OUTPUT not in node.outputs:
            self.ctx.relabel_error = f'{node.process_label}<{node.pk}> exit status {node.exit_status}'
            return None
        labels = {f'label_{key}': label for key, label in node.outputs[LABELS_OUTPUT].items()}
        outputs = relabel_analysis(
            parameters=orm.Dict({'window': self.inputs.relabel.window.value, 'top': self.ctx.relabel_top,
                                 'relabeled': self.ctx.relabeled}),
            table=orm.load_node(self.ctx.table), **labels,
        )
        self.out('relabel_metrics', outputs['metrics'])
        metrics = outputs['metrics'].get_dict()
        if 'error' in metrics:
            self.ctx.relabel_error = metrics['error']
            return None
        self.out('relabel_energies', outputs['energies'])
        self.out('relabel_plot', outputs['plot'])
        window = metrics['window'] or {}
        self.report(
            f're-labeling of {metrics["all"]["n"]} structures: r = {metrics["all"]["pearson_r"]}, RMSE '
            f'{1e3 * metrics["all"]["rmse"]:.1f} meV/atom, within {metrics["window_ev_per_atom"]} eV/atom of the best '
            f'{1e3 * window["rmse"]:.1f} meV/atom ({metrics["n_window"]} structures); offset '
            f'{1e3 * metrics["mean_difference"]:+.1f} meV/atom' if window else 'no structure in the window'
        )
        return None

    def results(self):
        table = orm.load_node(self.ctx.table)
        data = table.get_dict()
        for rank, key in enumerate(data['ranked']):
            node = orm.load_node(self.ctx.pool[key])
            row = data['structures'][key]
            node.base.extras.set_many({'key': key, 'rank': rank, 'enthalpy_per_atom': row['enthalpy'],
                                       'space_group': row['space_group'], 'pressure': data['pressure']})
            self.out(f'structures.rank_{rank:03d}', node)
        best = orm.load_node(self.ctx.pool[data['ranked'][0]])
        self.out('best_structure', best)
        self.out('ranking', table)
        nodes = {f'generation_{k:02d}': orm.load_node(pk) for k, pk in enumerate(self.ctx.reports)}
        nodes.update({f'relax_{k:02d}': orm.load_node(pk) for k, pk in enumerate(self.ctx.relax_summaries)})
        summary = summarize_search(parameters=orm.Dict({'stop_reason': self.ctx.stop_reason}), table=table, **nodes)
        self.out('summary', summary)
        if {'Si', 'O'} <= set(best.get_symbols_set()):
            comparison = compare_best(best)
            self.out('polymorph_comparison', comparison['comparison'])
            self.out('rdfs', comparison['rdfs'])
            c = comparison['comparison'].get_dict()
            similarity = 'n/a' if c['similarity'] is None else f'{c["similarity"]:.3f}'
            self.report(f'best structure {data["ranked"][0]}: {summary["best_enthalpy"]:.4f} eV/atom, '
                        f'{summary["best_space_group"]}, Si coordination {summary["best_si_coordination"]}; closest '
                        f'polymorph {c["closest"]} (RDF similarity {similarity})')
        if 'relabel_error' in self.ctx:
            return self.exit_codes.ERROR_RELABEL_FAILED.format(message=self.ctx.relabel_error)
        return None
