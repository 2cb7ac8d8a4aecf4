"""Bad input survey: invalid inputs of every workflow and calculation, rejected before anything runs.

One table, ``CASES``: each case builds the inputs of one process (a builder) with one mistake, or calls the
function that makes them (``get_builder_from_protocol``, ``load_cif``). The mistake must raise ``ValueError``
while the builder is filled in (port validators), when ``get_builder_from_protocol`` runs, or when the process is
instantiated (``instantiate_process``: the first thing ``run`` and ``submit`` do; the namespace validators run
there, before the process node is stored). The message must name the port (or the key) and say what is allowed,
and no ProcessNode may have been stored.

The potentials are two frozen DeePMD models with random weights (made in-process in seconds: validators read their
type_map, not their accuracy); the dataset is one random SiO2 packing labeled by the oracle.
"""

from __future__ import annotations

import types

import pytest

from .conftest import TINY_PARAMETERS

pytest_plugins = ['aiida.tools.pytest_fixtures']

CONDITION = {'temperature': 3000.0, 'pressure': 0.0, 'ensemble': 'nvt', 'steps': 20, 'timestep': 0.001, 'dump_every': 10}
DELETE = object()  # a change that removes the input


def untrained_model(path, seed: int):
    """A frozen DeePMD model of the tiny network with random weights (``dp freeze`` of step 0), saved at ``path``.

    What the validators read (type_map, rcut) is real; training it would only cost minutes.
    """
    import copy
    import json

    import torch
    from deepmd.pt.model.model import get_model
    from deepmd.utils.argcheck import normalize

    from aiida_liqcryst.deepmd.calculations.train import make_input

    config = normalize(make_input(copy.deepcopy(TINY_PARAMETERS), ['data'], [], seed))
    model = torch.jit.script(get_model(copy.deepcopy(config['model'])))
    torch.jit.save(model, str(path), _extra_files={'model_def_script': json.dumps(config['model'])})
    return path


@pytest.fixture(scope='module')
def env(aiida_profile, codes, tmp_path_factory):
    """What the cases need: codes, a one-frame dataset, two frozen models, structures and CIF files."""
    from aiida import orm
    from ase import Atoms

    from aiida_liqcryst.deepmd.data.dataset import LabeledDatasetData
    from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
    from aiida_liqcryst.engines import oracle
    from aiida_liqcryst.structures.polymorphs import as_structure_data
    from aiida_liqcryst.structures.random_packing import random_packing

    melt = random_packing({'Si': 1, 'O': 2}, 8, 2.6, 1.5, seed=0)
    frame = {'symbols': melt.get_chemical_symbols(), 'positions': melt.positions, 'cell': melt.cell.array,
             **oracle.label_atoms(melt)}
    models = tmp_path_factory.mktemp('models')
    cifs = tmp_path_factory.mktemp('cifs')
    # a molecule: atom sites in Cartesian coordinates, no cell
    (cifs / 'water.cif').write_text(
        'data_water\nloop_\n_atom_site_label\n_atom_site_Cartn_x\n_atom_site_Cartn_y\n_atom_site_Cartn_z\n'
        'O1 0.0 0.0 0.0\nH1 0.96 0.0 0.0\nH2 -0.24 0.93 0.0\n'
    )
    (cifs / 'cell_only.cif').write_text(  # a cell without atoms
        'data_empty\n_cell_length_a 5\n_cell_length_b 5\n_cell_length_c 5\n'
        '_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n'
    )
    (cifs / 'notes.cif').write_text('These are my notes on quartz, not a CIF.\n')
    return types.SimpleNamespace(
        codes=codes,
        dataset=LabeledDatasetData(type_map=['O', 'Si'], frames=[frame]).store(),
        # the same real frame, with a type_map that also lists Ge
        dataset_with_ge=LabeledDatasetData(type_map=['Ge', 'O', 'Si'], frames=[frame]),
        potentials={
            f'm{i}': DeepPotentialData(untrained_model(models / f'm{i}.pth', seed=i + 1)).store() for i in range(2)
        },
        melt=orm.StructureData(ase=melt),
        geo2=orm.StructureData(ase=Atoms('GeO2', scaled_positions=[[0, 0, 0], [0.3, 0.3, 0], [0.7, 0.7, 0]],
                                         cell=[4.4, 4.4, 2.9], pbc=True)),
        molecule=orm.StructureData(ase=Atoms('SiO2', positions=[[5, 5, 5], [6.6, 5, 5], [3.4, 5, 5]],
                                             cell=[10, 10, 10], pbc=False)),
        crystal=as_structure_data('stishovite', primitive=True),
        cifs=cifs,
    )


# ------------------------------------------------------------------------------------------------ builders
def _apply(builder, changes: dict):
    """Set (or with ``DELETE`` remove) inputs given by dotted port names, e.g. ``{'explore.eps_lo': ...}``."""
    for name, value in changes.items():
        *namespaces, port = name.split('.')
        target = builder
        for namespace in namespaces:
            target = target[namespace]
        if value is DELETE:
            del target[port]
        else:
            target[port] = value
    return builder


def _parameters(**sections):
    """The tiny deepmd parameters with ``sections`` merged in (``{'model': {'descriptor': {...}}}``)."""
    import copy

    from aiida_liqcryst.protocols import recursive_merge

    return recursive_merge(copy.deepcopy(TINY_PARAMETERS), sections)


def train_ensemble(env, parameters=None, protocol='demo', **changes):
    from aiida import orm

    from aiida_liqcryst.workflows.train_ensemble import TrainEnsembleWorkChain

    builder = TrainEnsembleWorkChain.get_builder_from_protocol(
        env.codes['dp'], env.dataset, protocol=protocol, overrides={'parameters': TINY_PARAMETERS}, seeds=[1, 2]
    )
    if parameters is not None:
        builder.train.train.parameters = orm.Dict(parameters)
    return _apply(builder, changes)


def deepmd_train(env, **changes):
    from aiida import orm
    from aiida.plugins import CalculationFactory

    builder = CalculationFactory('liqcryst.deepmd.train').get_builder()
    builder.code = env.codes['dp']
    builder.datasets = {'data': env.dataset}
    builder.parameters = orm.Dict(TINY_PARAMETERS)
    builder.seed = orm.Int(1)
    return _apply(builder, changes)


def deepmd_test(env, **changes):
    from aiida.plugins import CalculationFactory

    builder = CalculationFactory('liqcryst.deepmd.test').get_builder()
    builder.code = env.codes['dp']
    builder.potential = env.potentials['m0']
    builder.dataset = env.dataset
    return _apply(builder, changes)


def explore(env, **changes):
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.explore_md').get_builder()
    builder.code = env.codes['lmp']
    builder.potentials = env.potentials
    builder.structures = {'melt': env.melt}
    builder.conditions = orm.List([CONDITION])
    return _apply(builder, changes)


def explore_calc(env, **changes):
    from aiida import orm
    from aiida.plugins import CalculationFactory

    builder = CalculationFactory('liqcryst.explore_md').get_builder()
    builder.code = env.codes['lmp']
    builder.potentials = env.potentials
    builder.structure = env.melt
    builder.parameters = orm.Dict(CONDITION)
    return _apply(builder, changes)


def label(env, protocol=None, overrides=None, **changes):
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.label').get_builder_from_protocol(
        env.codes['oracle'], {'melt': env.melt}, 'oracle', ['O', 'Si'], protocol=protocol, overrides=overrides
    )
    return _apply(builder, changes)


def oracle_calc(env, **changes):
    from aiida.plugins import CalculationFactory

    builder = CalculationFactory('liqcryst.oracle').get_builder()
    builder.code = env.codes['oracle']
    builder.structures = {'melt': env.melt}
    return _apply(builder, changes)


def ase_calc(env, **changes):
    from aiida import orm
    from aiida.plugins import CalculationFactory

    builder = CalculationFactory('liqcryst.ase').get_builder()
    builder.code = env.codes['ase']
    builder.structures = {'melt': env.melt}
    builder.potential = env.potentials['m0']
    builder.settings = orm.Dict({'task': 'relax', 'steps': 5})
    return _apply(builder, changes)


def active_loop(env, protocol='demo', pressure_range='HP', **changes):
    from aiida.plugins import WorkflowFactory

    codes = {'dp': env.codes['dp'], 'lmp': env.codes['lmp'], 'engine': env.codes['oracle']}
    builder = WorkflowFactory('liqcryst.active_loop').get_builder_from_protocol(
        codes, {'Si': 1, 'O': 2}, engine='oracle', protocol=protocol, pressure_range=pressure_range
    )
    return _apply(builder, changes)


def validate(env, **changes):
    from aiida import orm
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.validate').get_builder()
    builder.potentials = env.potentials
    builder.potential = env.potentials['m0']
    builder.dp_code = env.codes['dp']
    builder.md.code = env.codes['lmp']
    builder.md.structures = {'melt': env.melt}
    builder.md.conditions = orm.List([CONDITION])
    builder.md.max_candidates = orm.Int(2)
    builder.label.engine = orm.Str('oracle')
    builder.label.code = env.codes['oracle']
    builder.label.type_map = orm.List(['O', 'Si'])
    return _apply(builder, changes)


def eos_scan(env, polymorphs=('stishovite',), **changes):
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.eos_scan').get_builder_from_protocol(
        env.codes['ase'], {'tiny': env.potentials['m0']}, polymorphs=list(polymorphs)
    )
    return _apply(builder, changes)


def vdos(env, **changes):
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.vdos').get_builder()
    builder.code = env.codes['ase']
    builder.structure = env.crystal
    builder.potentials = {'tiny': env.potentials['m0']}
    return _apply(builder, changes)


def evo_search(env, composition=None, **changes):
    from aiida.plugins import WorkflowFactory

    builder = WorkflowFactory('liqcryst.evo_search').get_builder_from_protocol(
        env.codes['ase'], env.potentials['m0'], composition or {'Si': 1, 'O': 2}
    )
    return _apply(builder, changes)


def load_cif(env, name):
    from aiida_liqcryst.structures.polymorphs import load_cif as load

    return load(env.cifs / name)


def get_polymorph(env, name):
    from aiida_liqcryst.structures.polymorphs import get_polymorph as get

    return get(name)


# ------------------------------------------------------------------------------------------------ the table
def case(make, fragments, id, **changes):  # noqa: A002 -- pytest's name
    """One row: ``make(env, **changes)`` must raise ValueError with every fragment in its message."""
    return pytest.param(make, changes, fragments, id=id)


def _orm(kind, value):
    """An unstored node, built when the case runs (the table is made at import time, before the profile)."""
    return ('orm', kind, value)


CASES = [
    # -- liqcryst.train_ensemble / liqcryst.deepmd.train (deepmd-kit's argcheck and the datasets) -------------
    case(train_ensemble, ['`seeds`', 'distinct integers'], 'train_ensemble-seeds-repeated', seeds=_orm('List', [1, 1])),
    case(train_ensemble, ['`seeds`', 'non-negative integers'], 'train_ensemble-seed-negative',
         seeds=_orm('List', [-1, 2])),
    case(train_ensemble, ['unknown protocol `fast`', "choose one of ['demo', 'paper', 'study', 'study_production']"],
         'train_ensemble-unknown-protocol', protocol='fast'),
    case(train_ensemble, ['`parameters`', 'model/descriptor', '`se_e9`', 'Did you mean'],
         'train_ensemble-unknown-descriptor-type', parameters=_parameters(model={'descriptor': {'type': 'se_e9'}})),
    case(train_ensemble, ['`parameters`', '`rcutt`', 'Did you mean: rcut'], 'train_ensemble-unknown-deepmd-key',
         parameters=_parameters(model={'descriptor': {'rcutt': 3.0}})),
    case(train_ensemble, ['`parameters.model.type_map`', "['O', 'Si']", 'must be equal'],
         'train_ensemble-type-map-differs-from-dataset', parameters=_parameters(model={'type_map': ['Si', 'O']})),
    case(train_ensemble, ['`parameters.training.numb_steps`', 'positive integer'], 'train_ensemble-numb-steps-negative',
         parameters=_parameters(training={'numb_steps': -5})),
    case(train_ensemble, ['`datasets`', 'at least one LabeledDatasetData'], 'train_ensemble-no-dataset',
         **{'train.train.datasets': {}}),
    case(train_ensemble, ['`init_models`', "allowed keys are ['model_0', 'model_1']"],
         'train_ensemble-init-model-of-no-model', init_models=_orm('init_models', None)),
    case(train_ensemble, ['`nan_learning_rate_factor`', '(0, 1)'], 'train_ensemble-nan-factor-above-one',
         **{'train.nan_learning_rate_factor': _orm('Float', 1.5)}),
    case(train_ensemble, ['`code` <lmp@', '`liqcryst.explore_md`', "deepmd-kit's `dp`"], 'train_ensemble-lammps-code',
         **{'train.train.code': _orm('code', 'lmp')}),
    case(deepmd_train, ['`datasets.data` is empty', 'at least one labeled frame'], 'deepmd.train-empty-dataset',
         datasets=_orm('empty_dataset', None)),
    case(deepmd_train, ['`validation.valid` has type_map', 'must be equal'], 'deepmd.train-validation-type-map',
         validation=_orm('validation_with_ge', None)),
    case(deepmd_train, ['`restart_mode`', "['init_model', 'restart']"], 'deepmd.train-unknown-restart-mode',
         restart_mode=_orm('Str', 'resume')),
    case(deepmd_train, ['`code`', 'no code given', "deepmd-kit's `dp`"], 'deepmd.train-no-code', code=DELETE),
    # -- liqcryst.deepmd.test ---------------------------------------------------------------------------------
    case(deepmd_test, ['`dataset`', "['Ge']", 'type_map holds every element'], 'deepmd.test-element-unknown-to-potential',
         dataset=_orm('dataset_with_ge', None)),
    case(deepmd_test, ['`code` <oracle@', '`liqcryst.oracle`', "deepmd-kit's `dp`"], 'deepmd.test-oracle-code',
         code=_orm('code', 'oracle')),
    # -- liqcryst.explore_md (work chain) -----------------------------------------------------------------------
    case(explore, ['`conditions`', '`temperature` must be > 0 K'], 'explore_md-negative-temperature',
         conditions=_orm('List', [{**CONDITION, 'temperature': -300.0}])),
    case(explore, ['`conditions`', '`timestep` must be > 0'], 'explore_md-zero-timestep',
         conditions=_orm('List', [{**CONDITION, 'timestep': 0.0}])),
    case(explore, ['`conditions`', "unknown keys ['temprature']", 'allowed'], 'explore_md-unknown-condition-key',
         conditions=_orm('List', [{**CONDITION, 'temprature': 3000.0}])),
    case(explore, ['`conditions`', 'non-empty list of condition dicts'], 'explore_md-no-condition',
         conditions=_orm('List', [])),
    case(explore, ['`seed`', 'must be in [0, 2147483646]'], 'explore_md-negative-velocity-seed',
         conditions=_orm('List', [{**CONDITION, 'seed': -1}])),
    case(explore, ['`seed`', 'integer >= 0'], 'explore_md-negative-selection-seed', seed=_orm('Int', -1)),
    case(explore, ['`eps_lo`', '0 <= `eps_lo` < `eps_hi`'], 'explore_md-trust-levels-inverted',
         eps_lo=_orm('Float', 0.30), eps_hi=_orm('Float', 0.15)),
    case(explore, ['`eps_lo`', '0 <= `eps_lo` < `eps_hi`'], 'explore_md-trust-levels-equal',
         eps_lo=_orm('Float', 0.2), eps_hi=_orm('Float', 0.2)),
    case(explore, ['`structures.geo2`', "['Ge']", "type_map ['O', 'Si']", 'models trained with them'],
         'explore_md-element-outside-type-map', structures=_orm('structures', 'geo2')),
    case(explore, ['`structures`', 'at least one starting structure'], 'explore_md-no-structure', structures={}),
    case(explore, ['`potentials`', 'at least 2 models, got 1'], 'explore_md-one-model',
         potentials=_orm('potentials', 1)),
    case(explore, ['`selection`', "one of ('random', 'fps')"], 'explore_md-unknown-selection-method',
         selection=_orm('Str', 'best')),
    case(explore, ['`max_candidates`', '>= 0'], 'explore_md-negative-max-candidates', max_candidates=_orm('Int', -1)),
    case(explore, ['`code` <oracle@', '`liqcryst.oracle`', '`liqcryst.explore_md`'], 'explore_md-oracle-code',
         code=_orm('code', 'oracle')),
    case(explore, ["'code'", 'required value was not provided'], 'explore_md-no-code', code=DELETE),
    # -- liqcryst.explore_md (calculation) ----------------------------------------------------------------------
    case(explore_calc, ['`parameters`', '`ensemble` must be one of', 'npt'], 'explore_md_calc-unknown-ensemble',
         parameters=_orm('Dict', {**CONDITION, 'ensemble': 'nve'})),
    case(explore_calc, ['`parameters`', '`dump_every` (50) must not exceed `steps` (20)'],
         'explore_md_calc-dump-every-above-steps', parameters=_orm('Dict', {**CONDITION, 'dump_every': 50})),
    case(explore_calc, ['`structure`', '3D periodic'], 'explore_md_calc-not-periodic', structure=_orm('structure', 'molecule')),
    case(explore_calc, ['`code`', 'no code given', '`liqcryst.explore_md`'], 'explore_md_calc-no-code', code=DELETE),
    # -- liqcryst.label -----------------------------------------------------------------------------------------
    case(label, ['`engine`', "choose one of ['cp2k', 'oracle', 'vasp']"], 'label-unknown-engine',
         engine=_orm('Str', 'gaussian')),
    case(label, ['`code` <lmp@', "engine 'oracle' needs a code for `liqcryst.oracle`"], 'label-code-of-another-engine',
         code=_orm('code', 'lmp')),
    case(label, ['`structures.geo2`', "['Ge']", "`type_map` ['O', 'Si']", 'add them to it'],
         'label-element-outside-type-map', structures=_orm('structures', 'geo2')),
    case(label, ['`structures`', 'at least one structure'], 'label-no-structure', structures={}),
    case(label, ['`type_map`', 'distinct element symbols'], 'label-type-map-unknown-symbol',
         type_map=_orm('List', ['O', 'Xx'])),
    case(label, ['`settings.oracle`', "unknown oracle settings ['relax']", 'allowed are relax_steps, fmax, md'],
         'label-unknown-oracle-setting', settings=_orm('Dict', {'oracle': {'relax': 5}})),
    case(label, ['`settings.oracle`', 'relax_steps must be an integer >= 0'], 'label-negative-relax-steps',
         settings=_orm('Dict', {'oracle': {'relax_steps': -3}})),
    case(label, ['`settings` is keyed by engine', "unknown keys ['relax_steps']"], 'label-settings-not-keyed-by-engine',
         settings=_orm('Dict', {'relax_steps': 3})),
    case(label, ['`batch_size`', 'positive integer'], 'label-zero-batch-size', batch_size=_orm('Int', 0)),
    case(label, ['unknown override keys [\'batch\']', "allowed are ['batch_size',"], 'label-unknown-override',
         overrides={'batch': 4}),
    case(label, ['`parameters.oracle`', 'the oracle has no parameters', '`settings`'], 'label-oracle-parameters',
         parameters=_orm('Dict', {'oracle': {'relax_steps': 3}})),
    case(label, ['unknown protocol `fast`', "choose one of ['demo', 'paper']"], 'label-unknown-protocol', protocol='fast'),
    # -- liqcryst.oracle ------------------------------------------------------------------------------------------
    case(oracle_calc, ['`settings`', 'md.steps must be a positive integer'], 'oracle-negative-md-steps',
         settings=_orm('Dict', {'md': {'steps': -10, 'temperature': 3000.0, 'timestep': 1.0, 'every': 5}})),
    case(oracle_calc, ['`settings`', "md settings miss ['temperature']"], 'oracle-md-without-temperature',
         settings=_orm('Dict', {'md': {'steps': 10, 'timestep': 1.0, 'every': 5}})),
    case(oracle_calc, ['`structures`', 'labels 3D periodic cells', "['mol']"], 'oracle-not-periodic',
         structures=_orm('structures_key', ('mol', 'molecule'))),
    # -- liqcryst.ase ---------------------------------------------------------------------------------------------
    case(ase_calc, ['`settings`', "unknown task 'phonons'", "choose one of ('label', 'relax', 'eos', 'md')"],
         'ase-unknown-task', settings=_orm('Dict', {'task': 'phonons'})),
    case(ase_calc, ['`settings`', "unknown key(s) ['temperature'] for task 'relax'", 'allowed'], 'ase-unknown-key',
         settings=_orm('Dict', {'task': 'relax', 'temperature': 300.0})),
    case(ase_calc, ['`settings`', "'steps' must be >= 0"], 'ase-negative-steps',
         settings=_orm('Dict', {'task': 'relax', 'steps': -5})),
    case(ase_calc, ['`settings`', "task 'md' needs 'temperature'"], 'ase-md-without-temperature',
         settings=_orm('Dict', {'task': 'md', 'steps': 10})),
    case(ase_calc, ['`structures.geo2`', "['Ge']", 'potential trained with them'], 'ase-element-outside-type-map',
         structures=_orm('structures', 'geo2')),
    case(ase_calc, ['`code` <lmp@', '`liqcryst.ase`'], 'ase-lammps-code', code=_orm('code', 'lmp')),
    # -- liqcryst.active_loop ------------------------------------------------------------------------------------
    case(active_loop, ['`initial_dataset`', '`initial_label`'], 'active_loop-no-initial-data', initial_label=DELETE),
    case(active_loop, ['`schedule`', "lacks ['steps']"], 'active_loop-stage-without-steps',
         schedule=_orm('List', [{'temperatures': [3000.0], 'pressures': [0.0]}])),
    case(active_loop, ['`schedule`', 'positive values (K)'], 'active_loop-stage-negative-temperature',
         schedule=_orm('List', [{'temperatures': [-3000.0], 'pressures': [0.0], 'steps': 100}])),
    case(active_loop, ['`schedule`', 'at least one exploration stage'], 'active_loop-empty-schedule',
         schedule=_orm('List', [])),
    case(active_loop, ['`density`', 'positive', '[2.3, -1.0]'], 'active_loop-negative-density',
         density=_orm('List', [2.3, -1.0])),
    case(active_loop, ['`density`', 'non-empty list'], 'active_loop-empty-density-list', density=_orm('List', [])),
    case(active_loop, ['`max_iterations`', 'must be >= 1'], 'active_loop-zero-iterations', max_iterations=_orm('Int', 0)),
    case(active_loop, ['`reuse_parameters`', "unknown sections ['model']"], 'active_loop-reuse-parameters-change-the-model',
         reuse_parameters=_orm('Dict', {'model': {'descriptor': {'rcut': 3.0}}})),
    case(active_loop, ['`reuse_parameters`', 'numb_steps', 'positive integer'], 'active_loop-reuse-zero-steps',
         reuse_parameters=_orm('Dict', {'training': {'numb_steps': 0}})),
    case(active_loop, ['`reuse_parameters`', 'argcheck', 'start_lrr'], 'active_loop-reuse-unknown-deepmd-key',
         reuse_parameters=_orm('Dict', {'learning_rate': {'start_lrr': 0.001}})),
    case(active_loop, ['`reuse_parameters`', '`reuse_models` to True'], 'active_loop-reuse-parameters-without-reuse',
         reuse_models=_orm('Bool', False), reuse_parameters=_orm('Dict', {'training': {'numb_steps': 10}})),
    case(active_loop, ['`accurate_threshold`', '(0, 1]'], 'active_loop-accurate-threshold-above-one',
         accurate_threshold=_orm('Float', 1.5)),
    case(active_loop, ['pressure_range', '"LP" or "HP"', "'XP'"], 'active_loop-pressure-range-XP', pressure_range='XP'),
    case(active_loop, ['unknown protocol `fast`', "choose one of ['demo', 'paper', 'study']"], 'active_loop-unknown-protocol',
         protocol='fast'),
    case(active_loop, ['`eps_lo`', '0 <= `eps_lo` < `eps_hi`'], 'active_loop-trust-levels-inverted',
         **{'explore.eps_lo': _orm('Float', 0.5), 'explore.eps_hi': _orm('Float', 0.2)}),
    case(active_loop, ['`engine`', "choose one of ['cp2k', 'oracle', 'vasp']"], 'active_loop-unknown-label-engine',
         **{'label.engine': _orm('Str', 'qe')}),
    case(active_loop, ['`code` <lmp@', "deepmd-kit's `dp`"], 'active_loop-lammps-code-for-training',
         **{'train.train.train.code': _orm('code', 'lmp')}),
    # -- liqcryst.validate ----------------------------------------------------------------------------------------
    case(validate, ['`potentials`', 'at least 2 models, got 1'], 'validate-one-model', potentials=_orm('potentials', 1)),
    case(validate, ['`md.structures.geo2`', "['Ge']", 'models trained with them'], 'validate-element-outside-type-map',
         **{'md.structures': _orm('structures', 'geo2')}),
    case(validate, ['`label.type_map`', "['Ge']", 'use the type_map of the potential'], 'validate-label-type-map',
         **{'label.type_map': _orm('List', ['Ge', 'O', 'Si'])}),
    case(validate, ['`potential`', 'DeePMD model'], 'validate-potential-not-a-model', potential=_orm('Int', 1)),
    case(validate, ['`dp_code` <lmp@', "deepmd-kit's `dp`"], 'validate-lammps-code-for-dp-test',
         dp_code=_orm('code', 'lmp')),
    # -- liqcryst.eos_scan, polymorphs and CIF files ----------------------------------------------------------------
    case(eos_scan, ['`volume_range`', '0 < min < max'], 'eos_scan-volume-range-inverted',
         volume_range=_orm('List', [1.12, 0.88])),
    case(eos_scan, ['`volume_range`', '0 < min < max'], 'eos_scan-volume-range-negative',
         volume_range=_orm('List', [-0.5, 1.1])),
    case(eos_scan, ['`number_of_points`', 'must be >= 5'], 'eos_scan-too-few-points', number_of_points=_orm('Int', 3)),
    case(eos_scan, ['`relax_settings`', "unknown key(s) ['temperature']", 'allowed'], 'eos_scan-unknown-relax-key',
         relax_settings=_orm('Dict', {'temperature': 300.0})),
    case(eos_scan, ['`relax_settings`', "'fmax' must be > 0"], 'eos_scan-zero-fmax', relax_settings=_orm('Dict', {'fmax': 0.0})),
    case(eos_scan, ['`structures`', '3D periodic', "['mol']"], 'eos_scan-not-periodic',
         structures=_orm('structures_key', ('mol', 'molecule'))),
    case(eos_scan, ['`structures.geo2`', "['Ge']", 'potential trained with them'], 'eos_scan-element-outside-type-map',
         structures=_orm('structures', 'geo2')),
    case(eos_scan, ['`potentials`', "'reference' is reserved", 'rename it'], 'eos_scan-reserved-potential-label',
         potentials=_orm('potentials', 'reference')),
    case(eos_scan, ['`code` <lmp@', '`liqcryst.ase`'], 'eos_scan-lammps-code', code=_orm('code', 'lmp')),
    case(eos_scan, ["unknown SiO2 polymorph 'quartzite'", 'known: alpha_quartz'], 'eos_scan-unknown-polymorph',
         polymorphs=('quartzite',)),
    case(get_polymorph, ["unknown SiO2 polymorph 'tridymite-X'", 'known: alpha_quartz'], 'polymorphs-unknown-name',
         name='tridymite-X'),
    case(load_cif, ['water.cif', 'holds no crystal structure', '_cell_length_a', '_atom_site_fract_x'],
         'cif-molecule-without-cell', name='water.cif'),
    case(load_cif, ['cell_only.cif', 'no crystal structure', '_atom_site_fract_x'], 'cif-cell-without-atoms',
         name='cell_only.cif'),
    case(load_cif, ['notes.cif', 'no crystal structure', '_cell_length_a'], 'cif-not-a-cif', name='notes.cif'),
    case(load_cif, ['missing.cif', 'no such file'], 'cif-missing-file', name='missing.cif'),
    # -- liqcryst.vdos ---------------------------------------------------------------------------------------------
    case(vdos, ['`parameters`', "'temperature' must be > 0"], 'vdos-negative-temperature',
         parameters=_orm('Dict', {'temperature': -300.0})),
    case(vdos, ['`parameters`', "unknown key(s) ['pressure']"], 'vdos-unknown-parameter',
         parameters=_orm('Dict', {'pressure': 1.0})),
    case(vdos, ['`potentials`', 'at least one DeePMD potential'], 'vdos-no-potential', potentials={}),
    case(vdos, ['`structure`', "['Ge']", 'potential trained with them'], 'vdos-element-outside-type-map',
         structure=_orm('structure', 'geo2')),
    case(vdos, ['`code` <oracle@', '`liqcryst.ase`'], 'vdos-oracle-code', code=_orm('code', 'oracle')),
    # -- liqcryst.evo_search ---------------------------------------------------------------------------------------
    case(evo_search, ['`population_size`', 'integer >= 2, got 1'], 'evo_search-population-of-one',
         population_size=_orm('Int', 1)),
    case(evo_search, ['`composition`', "unknown element 'Xx'"], 'evo_search-unknown-element',
         composition={'Si': 1, 'Xx': 2}),
    case(evo_search, ['`composition`', "['Ge']", "not in the type_map ['O', 'Si'] of `potential`"],
         'evo_search-element-outside-type-map', composition={'Si': 1, 'O': 2, 'Ge': 1}),
    case(evo_search, ['`fractions`', 'must sum to 1'], 'evo_search-fractions-sum-above-one',
         fractions=_orm('Dict', {'heredity': 0.9, 'mutation': 0.3, 'random': 0.2})),
    case(evo_search, ['`fractions`', "exactly ['heredity', 'mutation', 'random']"], 'evo_search-fractions-missing-key',
         fractions=_orm('Dict', {'heredity': 0.5, 'mutation': 0.5})),
    case(evo_search, ['`fractions`', "'random' must be a number >= 0"], 'evo_search-negative-fraction',
         fractions=_orm('Dict', {'heredity': 0.8, 'mutation': 0.4, 'random': -0.2})),
    case(evo_search, ['`formula_units`', '1 <= min <= max'], 'evo_search-formula-units-inverted',
         formula_units=_orm('List', [4, 2])),
    case(evo_search, ['`seed`', 'integer >= 0'], 'evo_search-negative-seed', seed=_orm('Int', -1)),
    case(evo_search, ['`relax_settings`', '(the pressure is `pressure`)'], 'evo_search-pressure-in-relax-settings',
         relax_settings=_orm('Dict', {'pressure': 3.0})),
]


def _resolve(env, value):
    """Turn the ``_orm`` placeholders of the table into nodes (unstored where they are new)."""
    from aiida import orm

    from aiida_liqcryst.deepmd.data.dataset import LabeledDatasetData

    if not (isinstance(value, tuple) and len(value) == 3 and value[0] == 'orm'):
        return value
    _, kind, arg = value
    if kind in ('Int', 'Float', 'Bool', 'Str', 'List', 'Dict'):
        return getattr(orm, kind)(arg)
    if kind == 'code':
        return env.codes[arg]
    if kind == 'structure':
        return getattr(env, arg)
    if kind == 'structures':
        return {'melt': env.melt, arg: getattr(env, arg)} if arg != 'melt' else {'melt': env.melt}
    if kind == 'structures_key':
        key, attribute = arg
        return {key: getattr(env, attribute)}
    if kind == 'potentials':
        return {'m0': env.potentials['m0']} if arg == 1 else {arg: env.potentials['m0']}
    if kind == 'empty_dataset':
        return {'data': LabeledDatasetData()}
    if kind == 'dataset_with_ge':
        return env.dataset_with_ge
    if kind == 'validation_with_ge':
        return {'valid': env.dataset_with_ge}
    if kind == 'init_models':
        return {'model_7': orm.FolderData()}
    raise ValueError(f'unknown placeholder {value}')


def _process_count() -> int:
    from aiida import orm

    return orm.QueryBuilder().append(orm.ProcessNode).count()


@pytest.mark.parametrize('make, changes, fragments', CASES)
def test_bad_input_rejected_before_running(env, make, changes, fragments):
    from aiida.engine.processes.builder import ProcessBuilder
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    changes = {key: _resolve(env, value) for key, value in changes.items()}
    before = _process_count()
    with pytest.raises(ValueError) as raised:
        built = make(env, **changes)
        assert isinstance(built, ProcessBuilder), f'{make.__name__} gave {built!r} instead of raising'
        instantiate_process(get_manager().get_runner(), built)
    message = str(raised.value)
    missing = [fragment for fragment in fragments if fragment not in message]
    assert not missing, f'message lacks {missing}: {message}'
    assert _process_count() == before, 'a process node was stored: the input was not rejected before running'


def test_table_covers_every_process_and_enough_cases():
    """The survey spans every workflow and calculation of the plugin with at least 24 cases."""
    names = {param.values[0].__name__ for param in CASES}
    assert {'train_ensemble', 'deepmd_train', 'deepmd_test', 'explore', 'explore_calc', 'label', 'oracle_calc',
            'ase_calc', 'active_loop', 'validate', 'eos_scan', 'vdos', 'evo_search', 'load_cif'} <= names
    assert len(CASES) >= 24
    assert len({param.id for param in CASES}) == len(CASES)
    # every message is checked for the port (or key) and for the fix: two fragments at least
    assert all(len(param.values[2]) >= 2 for param in CASES), [p.id for p in CASES if len(p.values[2]) < 2]


@pytest.mark.parametrize(
    'make',
    [train_ensemble, deepmd_train, deepmd_test, explore, explore_calc, label, oracle_calc, ase_calc, active_loop,
     validate, eos_scan, vdos, evo_search],
)
def test_the_builders_without_a_mistake_are_accepted(env, make):
    """The control: each builder of the table, unchanged, passes every validator (so the case's mistake is what a
    case's error is about). Instantiated only: the process node is created, nothing runs."""
    from aiida.engine.utils import instantiate_process
    from aiida.manage import get_manager

    process = instantiate_process(get_manager().get_runner(), make(env))
    assert process.node.is_stored and process.node.process_state.value == 'created'
