"""``DeepmdTrainCalculation``: ``dp train`` + ``dp freeze`` (+ ``dp compress``, ``dp test``) as one CalcJob.

Either backend of deepmd-kit: TensorFlow (``--tf``, model ``.pb``) or PyTorch (``--pt``, model ``.pth``).
"""

from __future__ import annotations

import copy
import json

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from ..backends import BACKENDS, DEFAULT_BACKEND, backend_error, backend_of_checkpoints, get_backend
from ..data.dataset import LabeledDatasetData
from ..data.potential import DeepPotentialData

RESTART_MODES = {'restart': '--restart', 'init_model': '--init-model'}
TRAIN_DIR, VALID_DIR = 'data/train', 'data/valid'
ENTRY_POINT = 'liqcryst.deepmd.train'
CODE_HINT = "deepmd-kit's `dp` (e.g. dp@localhost; default plugin none or liqcryst.deepmd.train)"


def deepmd_arguments():
    """deepmd-kit's own schema of ``input.json`` (a ``dargs.Argument``)."""
    from dargs import Argument
    from deepmd.utils.argcheck import gen_args

    return Argument('base', dict, gen_args())


def _wants_float(argument) -> bool:
    # (float, int)-typed keys (loss prefactors, numb_epoch, ...) are real numbers that deepmd also accepts as int
    return float in set(argument.dtype)


def cast_floats(argument, value):
    """``value`` with the integers that deepmd's schema ``argument`` types as float made floats again.

    AiiDA stores whole-number floats of a Dict as integers (``start_pref_f: 100.0`` comes back as ``100``).
    """
    if isinstance(value, dict):
        fields = dict(argument.sub_fields)
        for field in list(fields.values()):
            fields.update({alias: field for alias in field.alias})
        result = {key: cast_floats(fields[key], item) if key in fields else item for key, item in value.items()}
        for flag, variant in argument.sub_variants.items():
            tag = value.get(flag, variant.default_tag)
            tag = variant.choice_alias.get(tag, tag)
            if tag in variant.choice_dict:
                choice = variant.choice_dict[tag]
                casted = cast_floats(choice, {k: v for k, v in result.items() if k != flag})
                result.update(casted)
        return result
    if isinstance(value, list):
        if argument.repeat or argument.sub_fields or argument.sub_variants:
            return [cast_floats(argument, item) for item in value]
        lists = [t for t in argument.dtype if getattr(t, '__origin__', None) is list]
        element_types = {getattr(t, '__args__', (None,))[0] for t in lists}
        if float in element_types:
            return [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value
    if isinstance(value, int) and not isinstance(value, bool) and _wants_float(argument):
        return float(value)
    return value


def system_paths(prefix: str, datasets: dict) -> list[str]:
    """Relative paths of the system folders of ``datasets`` (namespace key -> dataset) in the calculation folder."""
    return [f'{prefix}/{key}/{system["name"]}' for key in sorted(datasets) for system in datasets[key].systems]


def _set_seed(section: dict, seed: int) -> None:
    if section.get('type') == 'hybrid':
        for sub in section.get('list', []):
            _set_seed(sub, seed)
    else:
        section['seed'] = seed


def make_input(parameters: dict, train_systems: list[str], valid_systems: list[str], seed: int) -> dict:
    """The ``input.json`` of ``dp train``: the user's sections with data systems, batch size and seeds filled in.

    ``training.batch_size`` (a shortcut, default ``auto``) goes into ``training_data`` and ``validation_data``; the
    seed goes into the descriptor, the fitting net and ``training.seed``. Integers typed float are cast back.
    """
    config = copy.deepcopy(parameters)
    training = config.setdefault('training', {})
    batch_size = training.pop('batch_size', 'auto')
    training['training_data'] = {
        'batch_size': batch_size,
        **training.get('training_data', {}),
        'systems': train_systems,
    }
    if valid_systems:
        training['validation_data'] = {
            'batch_size': batch_size,
            **training.get('validation_data', {}),
            'systems': valid_systems,
        }
    else:
        training.pop('validation_data', None)
    model = config.setdefault('model', {})
    if isinstance(model.get('descriptor'), dict):
        _set_seed(model['descriptor'], seed)
    if isinstance(model.get('fitting_net'), dict):
        model['fitting_net']['seed'] = seed
    training['seed'] = seed
    return cast_floats(deepmd_arguments(), config)


def check_parameters(parameters: dict, datasets: dict, validation: dict, backend: str = DEFAULT_BACKEND) -> str | None:
    """Why ``parameters`` cannot train on ``datasets``/``validation``, or None (deepmd's argcheck plus our checks)."""
    from deepmd.utils.argcheck import normalize

    for section in ('model', 'learning_rate', 'loss', 'training'):
        if not isinstance(parameters.get(section), dict):
            return f'`parameters` lacks the section `{section}` of deepmd\'s input.json'
    for name in ('training_data', 'validation_data'):
        if 'systems' in parameters['training'].get(name, {}):
            return f'`parameters.training.{name}.systems` is set by the calculation from its datasets: remove it'
    type_map = parameters['model'].get('type_map')
    for namespace, nodes in (('datasets', datasets), ('validation', validation)):
        for key, dataset in nodes.items():
            if not dataset.base.attributes.get('nframes', 0):  # a LabeledDatasetData() made without frames
                return f'`{namespace}.{key}` is empty: give a LabeledDatasetData with at least one labeled frame'
            if dataset.type_map != type_map:
                return (
                    f'`{namespace}.{key}` has type_map {dataset.type_map} but `parameters.model.type_map` is '
                    f'{type_map}: they must be equal'
                )
    numb_steps = parameters['training'].get('numb_steps')
    if numb_steps is not None and (not isinstance(numb_steps, int) or numb_steps <= 0):
        return f'`parameters.training.numb_steps` must be a positive integer, got {numb_steps}'
    training = parameters['training']
    disp_freq, save_freq = training.get('disp_freq', 1000), training.get('save_freq', 1000)  # deepmd's defaults
    if backend == 'tf' and isinstance(disp_freq, int) and isinstance(save_freq, int) and save_freq % disp_freq:
        # deepmd's TF trainer saves only at steps that are also display steps: otherwise no checkpoint is written
        # (nothing to restart from, and a numb_steps that save_freq divides leaves `dp freeze` nothing to freeze)
        return (
            f'`parameters.training.save_freq` ({save_freq}) must be a multiple of `disp_freq` ({disp_freq}) with the '
            'TensorFlow backend: it saves checkpoints only at display steps'
        )
    config = make_input(parameters, system_paths(TRAIN_DIR, datasets), system_paths(VALID_DIR, validation), seed=1)
    try:
        normalize(config)
    except Exception as exception:  # dargs' errors (unknown key, wrong type) and deepmd's own ValueErrors
        return f'`parameters` rejected by deepmd-kit\'s argcheck: {exception}'
    return None


def code_error(value, ctx, plugin: str, what: str) -> str | None:
    """Why the ``code`` input cannot run ``plugin`` (missing, or a code of another plugin), or None."""
    if (ctx is not None and 'code' not in ctx) or 'remote_folder' in value:
        return None  # excluded by an exposing process, or an import run
    code = value.get('code')
    if code is None:
        return f'`code`: no code given; give the code of {what}'
    actual = code.default_calc_job_plugin
    if actual is not None and actual != plugin:
        return f'`code` <{code.full_label}> runs the plugin `{actual}`; give the code of {what}'
    return None


def training_backend(node) -> str:
    """The backend of a DeepmdTrainCalculation node (those stored before the input existed trained PyTorch)."""
    return node.inputs.backend.value if 'backend' in node.inputs else 'pt'


def input_backend(inputs) -> str:
    """The backend a mapping of DeepmdTrainCalculation inputs asks for (its default when it names none)."""
    backend = inputs.get('backend')
    return backend.value if backend is not None else DEFAULT_BACKEND


def restart_backend_error(folder, backend: str, name: str = 'restart_from') -> str | None:
    """Why the checkpoints in ``folder`` (the input ``name``) cannot start a ``backend`` training, or None."""
    creator = folder.creator
    if creator is not None and creator.process_type == f'aiida.calculations:{ENTRY_POINT}':
        theirs = training_backend(creator)
    elif isinstance(folder, orm.FolderData):
        theirs = backend_of_checkpoints(folder.base.repository.list_object_names())
    else:
        return None  # a remote folder of unknown origin: dp itself will say if it cannot read the checkpoint
    if theirs is not None and theirs != backend:
        return (
            f'`{name}` holds {BACKENDS[theirs].title} checkpoints but `backend` is `{backend}`: set `backend` '
            f'to `{theirs}` to continue from them, or train from scratch (checkpoints do not cross backends)'
        )
    return None


def validate_inputs(value, ctx=None):
    """Check the code, and the parameters against the datasets with deepmd's argcheck, before anything runs."""
    if (error := code_error(value, ctx, ENTRY_POINT, CODE_HINT)) is not None:
        return error
    if ctx is not None and any(name not in ctx for name in ('parameters', 'datasets')):
        return None  # a port was excluded where these inputs are exposed
    datasets = dict(value.get('datasets', {}))
    if not datasets:
        return '`datasets` needs at least one LabeledDatasetData'
    if 'parameters' not in value:
        return None  # required ports report their own absence
    if 'restart_mode' in value and value['restart_mode'].value not in RESTART_MODES:
        return f'`restart_mode` must be one of {sorted(RESTART_MODES)}, got `{value["restart_mode"].value}`'
    backend = input_backend(value)
    if (error := backend_error(backend)) is not None:
        return f'`backend`: {error}'
    if 'restart_from' in value and (error := restart_backend_error(value['restart_from'], backend)) is not None:
        return error
    return check_parameters(value['parameters'].get_dict(), datasets, dict(value.get('validation', {})), backend)


class DeepmdTrainCalculation(CalcJob):
    """Train a DeePMD model with ``dp train``, freeze it (``model.pb`` or ``model.pth``) and optionally compress it.

    ``backend`` chooses deepmd-kit's TensorFlow (``tf``, the default: the fast one on CPUs) or PyTorch (``pt``).

    Checkpoints stay in the remote folder, so a run killed by the walltime can be continued with
    ``restart_from=<its remote_folder>`` and ``restart_mode='restart'``.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace(
            'datasets',
            valid_type=LabeledDatasetData,
            dynamic=True,
            help='Training data: one or more LabeledDatasetData, all with the type_map of the model.',
        )
        spec.input_namespace(
            'validation',
            valid_type=LabeledDatasetData,
            dynamic=True,
            required=False,
            help='Validation data (optional): reported as the *_val columns of the learning curve.',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            help='deepmd input.json sections `model`, `learning_rate`, `loss`, `training`; the calculation fills in '
            'the data systems and seeds. `training.batch_size` is a shortcut for the data batch size.',
        )
        spec.input('seed', valid_type=orm.Int, help='Seed of the descriptor, fitting net and data shuffling.')
        spec.input(
            'restart_from',
            valid_type=(orm.RemoteData, orm.FolderData),
            required=False,
            help='Folder of a previous training holding its checkpoints (model.ckpt* and `checkpoint`).',
        )
        spec.input(
            'restart_mode',
            valid_type=orm.Str,
            default=lambda: orm.Str('restart'),
            help="With `restart_from`: 'restart' continues the run (`dp train --restart`), 'init_model' starts a "
            'new run from its weights (`dp train --init-model`).',
        )
        spec.input(
            'backend',
            valid_type=orm.Str,
            default=lambda: orm.Str(DEFAULT_BACKEND),
            help="deepmd-kit's backend: 'tf' (TensorFlow, frozen model.pb; faster on CPUs) or 'pt' (PyTorch, "
            'model.pth). A restart or fine-tuning (`restart_from`) must use the backend that wrote the checkpoints.',
        )
        spec.input(
            'compress',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(False),
            help='Compress the frozen model with `dp compress` (tabulated embedding nets: faster MD).',
        )
        spec.input(
            'test',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='After freezing, test the model on every training frame (`dp test`): the dataset-wide RMSEs '
            '`rmse_e_dataset`/`rmse_f_dataset` of `output_parameters` (the learning curve shows single batches).',
        )
        spec.inputs.validator = validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['parser_name'].default = 'liqcryst.deepmd.train'
        spec.inputs['metadata']['options']['input_filename'].default = 'input.json'
        spec.inputs['metadata']['options']['withmpi'].default = False

        spec.output('potential', valid_type=DeepPotentialData, help='The frozen (and, if asked, compressed) model.')
        spec.output(
            'learning_curve',
            valid_type=orm.ArrayData,
            help='lcurve.out: one array per column, named by its header (step, rmse_e_trn, ..., lr).',
        )
        spec.output(
            'output_parameters',
            valid_type=orm.Dict,
            help='Final rmse_e_trn/val (eV/atom), rmse_f_trn/val (eV/Å) of the learning curve, rmse_e_dataset (eV/atom) '
            'and rmse_f_dataset (eV/Å) over all training frames (with `test`), steps done, wall time, loss_decreased.',
        )
        spec.default_output_node = 'output_parameters'

        spec.exit_code(300, 'ERROR_TRAINING_FAILED', message='dp train failed: {reason}')
        spec.exit_code(301, 'ERROR_MISSING_OUTPUT', message='The training did not produce {filename}.')
        spec.exit_code(302, 'ERROR_LCURVE', message='lcurve.out is missing or unreadable: {reason}')
        spec.exit_code(
            310, 'ERROR_NAN_LOSS', message='dp train stopped on a NaN loss or gradient: lower the learning rate.'
        )
        spec.exit_code(
            320,
            'ERROR_OUT_OF_WALLTIME',
            message='The training was killed at step {step} of {numb_steps} before it froze the model; its checkpoint '
            'is kept in the remote folder: restart from it.',
        )
        spec.exit_code(330, 'ERROR_COMPRESS', message='dp compress failed: see compress.log.')

    def prepare_for_submission(self, folder):
        datasets = dict(self.inputs.datasets)
        validation = dict(self.inputs.get('validation', {}))
        config = make_input(
            self.inputs.parameters.get_dict(),
            system_paths(TRAIN_DIR, datasets),
            system_paths(VALID_DIR, validation),
            self.inputs.seed.value,
        )
        with folder.open(self.options.input_filename, 'w') as handle:
            json.dump(config, handle, indent=2)

        local_copy_list = [(node.uuid, '', f'{TRAIN_DIR}/{key}') for key, node in datasets.items()]
        local_copy_list += [(node.uuid, '', f'{VALID_DIR}/{key}') for key, node in validation.items()]
        remote_copy_list = []

        backend = get_backend(self.inputs.backend.value)
        train_args = [backend.flag, 'train', self.options.input_filename]
        if 'restart_from' in self.inputs:
            mode = self.inputs.restart_mode.value
            files, checkpoint = self._checkpoint_files(mode, backend)
            source = self.inputs.restart_from
            if isinstance(source, orm.RemoteData):
                if source.computer.uuid != self.inputs.code.computer.uuid:
                    raise ValueError('`restart_from` must be a folder on the computer of the code')
                remote_copy_list = [(source.computer.uuid, f'{source.get_remote_path()}/{name}', '.') for name in files]
            else:
                local_copy_list += [(source.uuid, name, name) for name in files]
            train_args += [RESTART_MODES[mode], checkpoint]

        codeinfos = [self._codeinfo(train_args, 'train.log')]
        codeinfos.append(self._codeinfo([backend.flag, 'freeze', '-o', backend.model], 'freeze.log'))
        if self.inputs.compress.value:
            codeinfos.append(self._codeinfo(
                [backend.flag, 'compress', '-i', backend.model, '-o', backend.compressed_model], 'compress.log'
            ))

        if self.inputs.test.value:
            codeinfos.append(self._codeinfo(
                [backend.flag, 'test', '-m', backend.model, '-s', TRAIN_DIR, '-n', '0'], 'test.log'
            ))

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = codeinfos
        calcinfo.codes_run_mode = datastructures.CodeRunMode.SERIAL
        # `train && freeze && compress`: a killed or failed step must not be followed by the next one.
        calcinfo.prepend_text = 'set -e'
        if 'restart_from' in self.inputs and isinstance(self.inputs.restart_from, orm.RemoteData):
            calcinfo.prepend_text += '\n' + backend.relink_newest_checkpoint()
        calcinfo.local_copy_list = local_copy_list
        calcinfo.remote_copy_list = remote_copy_list
        calcinfo.retrieve_list = [
            self.options.input_filename,
            'lcurve.out',
            'train.log',
            'freeze.log',
            'compress.log',
            'test.log',
            'checkpoint',
        ]
        # Models become the `potential` output node: no second copy in the retrieved folder.
        calcinfo.retrieve_temporary_list = [backend.model, backend.compressed_model]
        return calcinfo

    def _checkpoint_files(self, mode: str, backend) -> tuple[list[str], str]:
        """Files to copy from ``restart_from`` and the checkpoint name to pass to ``dp train``."""
        source = self.inputs.restart_from
        extra = ['lcurve.out'] if mode == 'restart' else []  # a restart appends to the learning curve
        if isinstance(source, orm.RemoteData):
            # The glob copy dereferences a model.ckpt.pt symlink: it becomes the newest checkpoint itself.
            return [backend.checkpoint_glob, 'checkpoint', *extra], backend.checkpoint
        names = source.base.repository.list_object_names()
        checkpoint = backend.checkpoint
        if 'checkpoint' in names:  # both backends name the newest checkpoint there (TensorFlow: a protobuf text)
            content = source.get_object_content('checkpoint', mode='r').strip().splitlines()[0]
            checkpoint = content.split(':', 1)[-1].strip().strip('"').split('/')[-1]
        files = backend.checkpoint_files(names, checkpoint)
        if not files:
            raise ValueError(f'`restart_from` FolderData<{source.pk}> holds no checkpoint `{checkpoint}`')
        return [*files, *(['checkpoint'] if 'checkpoint' in names else []), *[n for n in extra if n in names]], checkpoint

    def _codeinfo(self, cmdline: list[str], log: str) -> datastructures.CodeInfo:
        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = cmdline
        codeinfo.stdout_name = log
        codeinfo.join_files = True
        return codeinfo
