"""TrainEnsembleWorkChain: N DeePMD models, same architecture and data, different seeds, trained in parallel."""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import WorkChain, calcfunction, if_
from aiida.plugins import CalculationFactory, WorkflowFactory

from aiida_liqcryst.deepmd.backends import DEFAULT_BACKEND, get_backend
from aiida_liqcryst.deepmd.calculations.train import input_backend, restart_backend_error
from aiida_liqcryst.deepmd.data.dataset import LabeledDatasetData
from aiida_liqcryst.protocols import ProtocolMixin

DeepmdTrainBaseWorkChain = WorkflowFactory('liqcryst.deepmd.train_base')
DeepmdTestCalculation = CalculationFactory('liqcryst.deepmd.test')

# held-out errors: `dp test` of each trained model on the `holdout` frames (energy eV/atom, forces eV/Å)
HOLDOUT_KEYS = ('rmse_e_holdout', 'rmse_f_holdout')
SUMMARY_KEYS = ('rmse_e_trn', 'rmse_f_trn', 'rmse_e_val', 'rmse_f_val', 'rmse_e_dataset', 'rmse_f_dataset') + HOLDOUT_KEYS
# call link label of the held-out test of model `model_<i>`
HOLDOUT_LINK = 'holdout_{key}'


def validate_seeds(value, _):
    if value is None:
        return None
    seeds = value.get_list()
    if not seeds or len(set(seeds)) != len(seeds):
        return f'`seeds` must be a non-empty list of distinct integers, got {seeds}'
    if any(not isinstance(s, int) or s < 0 for s in seeds):
        return f'`seeds` must be non-negative integers, got {seeds}'
    return None


def validate_inputs(inputs, _):
    init_models = inputs.get('init_models') or {}
    if init_models and 'seeds' in inputs:
        allowed = {f'model_{i}' for i in range(len(inputs['seeds'].get_list()))}
        unknown = sorted(set(init_models) - allowed)
        if unknown:
            return f'`init_models`: keys {unknown} match no model; allowed keys are {sorted(allowed)}'
    backend = input_backend(inputs.get('train', {}).get('train', {}))
    parameters = inputs.get('train', {}).get('train', {}).get('parameters')
    if 'holdout' in inputs and parameters is not None:
        type_map = parameters.get_dict().get('model', {}).get('type_map') or []
        unknown = sorted(set(inputs['holdout'].type_map) - set(type_map))
        if unknown:
            return (f'`holdout` has elements {unknown} that the models (type_map {type_map}) do not know: give held-out '
                    'frames of the same system')
    for key, folder in sorted(init_models.items()):
        if (error := restart_backend_error(folder, backend, name=f'init_models.{key}')) is not None:
            return error
    return None


@calcfunction
def summarize_ensemble(**results):
    """Per-model final RMSEs and their mean and spread over the ensemble.

    Keys of ``results``: ``model_<i>`` (training output_parameters) and, with a held-out set, ``holdout_model_<i>``
    (its ``dp test`` output_parameters): they add ``rmse_e_holdout``/``rmse_f_holdout`` to that model's row.
    """
    per_model = {key: node.get_dict() for key, node in sorted(results.items()) if not key.startswith('holdout_')}
    for key, node in results.items():
        if key.startswith('holdout_'):
            test = node.get_dict()
            per_model[key[len('holdout_'):]].update(
                {'rmse_e_holdout': test['rmse_e_per_atom'], 'rmse_f_holdout': test['rmse_f'], 'nframes_holdout': test.get('nframes')}
            )
    summary = {'number_of_models': len(per_model), 'models': per_model}
    for key in SUMMARY_KEYS:
        values = [p[key] for p in per_model.values() if p.get(key) is not None]
        if values:
            summary[f'{key}_mean'] = float(np.mean(values))
            summary[f'{key}_std'] = float(np.std(values))
    return orm.Dict(summary)


class TrainEnsembleWorkChain(ProtocolMixin, WorkChain):
    """Train an ensemble of DeePMD models that differ only by their random seed.

    The spread of their predictions is the model deviation that exploration uses to find configurations
    the models do not yet know. Each model is a :class:`DeepmdTrainBaseWorkChain` (NaN loss and walltime
    handled there), all submitted at once.
    """

    _protocol_file = 'deepmd'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            DeepmdTrainBaseWorkChain,
            namespace='train',
            exclude=('train.seed',),
            namespace_options={'help': 'Inputs of every model\'s DeepmdTrainBaseWorkChain (all but the seed).'},
        )
        spec.input(
            'seeds',
            valid_type=orm.List,
            validator=validate_seeds,
            help='One seed per model: the ensemble has len(seeds) models (the paper: 4).',
        )
        spec.input_namespace(
            'init_models',
            valid_type=(orm.RemoteData, orm.FolderData),
            dynamic=True,
            required=False,
            help='Start model `model_<i>` from the weights of a previous training: its folder (the `remote_folder` of '
            'a DeepmdTrainCalculation) under key `model_<i>`, run as `dp train --init-model` (fine-tuning on the new '
            'data instead of training from scratch).',
        )
        spec.input(
            'holdout',
            valid_type=LabeledDatasetData,
            required=False,
            help='Held-out frames labeled by the reference and not chosen by these models (e.g. reference MD of the '
            'melt): every trained model is tested on them (`dp test`), and the summary gets `rmse_e_holdout` (eV/atom) '
            'and `rmse_f_holdout` (eV/Å) per model and their ensemble mean. Never trained on.',
        )
        spec.inputs.validator = validate_inputs
        spec.outline(
            cls.train_models,
            cls.collect_models,
            if_(cls.has_holdout)(cls.test_models, cls.collect_tests),
            cls.results,
        )
        spec.output_namespace('potentials', valid_type=orm.Data, dynamic=True, help='The trained models, `model_<i>`.')
        spec.output('summary', valid_type=orm.Dict, help='Final RMSEs per model with ensemble mean and spread '
                    '(held-out errors with `holdout`).')
        spec.exit_code(401, 'ERROR_MODEL_FAILED', message='{count} of the models failed to train: {failed}')
        spec.exit_code(402, 'ERROR_HOLDOUT_TEST', message='the held-out test failed for {failed}')

    @classmethod
    def get_builder_from_protocol(cls, code, datasets, protocol=None, overrides=None, seeds=None, type_map=None,
                                  **kwargs):
        """A builder for ``datasets`` (dict label -> LabeledDatasetData, or one dataset) with a named protocol.

        :param datasets: the training data; None leaves them to the caller (a parent work chain that makes them),
            which then gives ``type_map``.
        :param overrides: nested dict merged into the protocol (e.g. ``{'parameters': {'training': {...}}}``,
            ``{'backend': 'pt'}`` for PyTorch, ``{'compress': False}``).
        :param seeds: explicit seeds; default ``0 .. number_of_models - 1``.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if datasets is not None and not isinstance(datasets, dict):
            datasets = {'data': datasets}
        if datasets is not None:
            type_maps = {tuple(d.type_map) for d in datasets.values()}
            if len(type_maps) != 1:
                raise ValueError(f'the datasets have different type maps: {sorted(type_maps)}')
            type_map = type_maps.pop()
        elif type_map is None:
            raise ValueError('give `datasets`, or `type_map` when the datasets are made later')
        parameters = inputs['parameters']
        parameters['model']['type_map'] = list(type_map)
        builder = cls.get_builder()
        builder.train.train.code = code
        if datasets is not None:
            builder.train.train.datasets = datasets
        builder.train.train.parameters = orm.Dict(parameters)
        builder.train.train.backend = orm.Str(get_backend(inputs.get('backend', DEFAULT_BACKEND)).name)
        builder.train.train.compress = orm.Bool(inputs.get('compress', False))
        for key, value in kwargs.items():
            setattr(builder.train.train, key, value)
        builder.seeds = orm.List(list(seeds) if seeds is not None else list(range(inputs['number_of_models'])))
        return builder

    def train_models(self):
        for index, seed in enumerate(self.inputs.seeds.get_list()):
            inputs = AttributeDict(self.exposed_inputs(DeepmdTrainBaseWorkChain, namespace='train'))
            inputs['train']['seed'] = orm.Int(seed)
            start = self.inputs.get('init_models', {}).get(f'model_{index}')
            if start is not None:
                inputs['train']['restart_from'] = start
                inputs['train']['restart_mode'] = orm.Str('init_model')
            inputs.metadata = {'call_link_label': f'model_{index}'}
            node = self.submit(DeepmdTrainBaseWorkChain, **inputs)
            origin = f', from the weights in <{start.pk}>' if start is not None else ''
            self.report(f'model {index}: seed {seed}{origin}, launched <{node.pk}>')
            self.to_context(**{f'model_{index}': node})

    def collect_models(self):
        failed, self.ctx.results = [], {}
        for index in range(len(self.inputs.seeds.get_list())):
            node = self.ctx[f'model_{index}']
            if not node.is_finished_ok:
                failed.append(f'model_{index} <{node.pk}> exit {node.exit_status}')
                continue
            self.out(f'potentials.model_{index}', node.outputs.potential)
            self.ctx.results[f'model_{index}'] = node.outputs.output_parameters
        if failed:
            return self.exit_codes.ERROR_MODEL_FAILED.format(count=len(failed), failed=', '.join(failed))
        return None

    def has_holdout(self):
        return 'holdout' in self.inputs

    def test_models(self):
        for key in self.ctx.results:
            potential = self.ctx[key].outputs.potential
            inputs = {
                'code': self.inputs.train.train.code,
                'potential': potential,
                'dataset': self.inputs.holdout,
                'metadata': {'call_link_label': HOLDOUT_LINK.format(key=key)},
            }
            self.to_context(**{f'holdout_{key}': self.submit(DeepmdTestCalculation, **inputs)})

    def collect_tests(self):
        failed = []
        for key in list(self.ctx.results):
            node = self.ctx[f'holdout_{key}']
            if not node.is_finished_ok:
                failed.append(f'{key} <{node.pk}> exit {node.exit_status}')
                continue
            self.ctx.results[f'holdout_{key}'] = node.outputs.output_parameters
        if failed:
            return self.exit_codes.ERROR_HOLDOUT_TEST.format(failed=', '.join(failed))
        return None

    def results(self):
        summary = summarize_ensemble(**self.ctx.results)
        self.out('summary', summary)
        s = summary.get_dict()
        key = 'rmse_f_dataset' if 'rmse_f_dataset_mean' in s else 'rmse_f_trn'
        where = 'over the training data' if key == 'rmse_f_dataset' else 'last batch'
        line = (f'{s["number_of_models"]} models trained: force RMSE {where} {s[f"{key}_mean"]:.3f}'
                f' ± {s[f"{key}_std"]:.3f} eV/Å')
        if 'rmse_f_holdout_mean' in s:
            line += (f'; held-out ({self.inputs.holdout.nframes} frames): energy {1e3 * s["rmse_e_holdout_mean"]:.1f} '
                     f'meV/atom, force {s["rmse_f_holdout_mean"]:.3f} ± {s["rmse_f_holdout_std"]:.3f} eV/Å')
        self.report(line)
        return None
