"""``DeepmdTestCalculation``: ``dp test`` of a frozen model (either backend) on a labeled dataset."""

from __future__ import annotations

from aiida import orm
from aiida.common import datastructures
from aiida.engine import CalcJob

from ..data.dataset import LabeledDatasetData
from ..data.potential import DeepPotentialData
from .train import code_error

CODE_HINT = "deepmd-kit's `dp` (e.g. dp@localhost; default plugin none or liqcryst.deepmd.test)"

DATA_DIR = 'data'
DETAIL = 'detail'


def validate_inputs(value, ctx=None):
    """The code must be `dp`; the potential must know every element of the dataset."""
    if (error := code_error(value, ctx, 'liqcryst.deepmd.test', CODE_HINT)) is not None:
        return error
    if ctx is not None and any(name not in ctx for name in ('potential', 'dataset')):
        return None
    if 'potential' not in value or 'dataset' not in value:
        return None
    missing = [e for e in value['dataset'].type_map if e not in value['potential'].type_map]
    if missing:
        type_map = value['potential'].type_map
        return (
            f'`dataset` has elements {missing} that `potential` (type_map {type_map}) does not know: test a '
            'potential whose type_map holds every element of the dataset'
        )
    return None


class DeepmdTestCalculation(CalcJob):
    """Errors of a DeePMD model on a dataset (``dp --tf|--pt test -m <model> -s data -d detail``) and its parity data."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('potential', valid_type=DeepPotentialData, help='The frozen model to test.')
        spec.input('dataset', valid_type=LabeledDatasetData, help='The labeled frames to test it on (all of them).')
        spec.inputs.validator = validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['parser_name'].default = 'liqcryst.deepmd.test'
        spec.inputs['metadata']['options']['withmpi'].default = False

        spec.output(
            'output_parameters',
            valid_type=orm.Dict,
            help="dp test's weighted errors: energy RMSE/MAE per atom (eV), force RMSE/MAE (eV/Å), virial RMSE per "
            'atom (eV); the largest force component error (eV/Å); the number of frames.',
        )
        spec.output(
            'parity',
            valid_type=orm.ArrayData,
            help='Per frame: energy_reference/energy_predicted (eV/atom), virial_reference/virial_predicted (eV/atom, '
            '9 components); per atom: forces_reference/forces_predicted (N, 3) eV/Å. For parity plots.',
        )
        spec.default_output_node = 'output_parameters'
        spec.exit_code(301, 'ERROR_MISSING_OUTPUT', message='dp test did not write {filename}: see test.log.')
        spec.exit_code(302, 'ERROR_UNREADABLE_OUTPUT', message='{filename} is unreadable: {reason}')

    def prepare_for_submission(self, folder):
        potential = self.inputs.potential
        codeinfo = datastructures.CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        # -n 0: every frame of every system; systems are found below `data` by their type.raw
        flag = potential.deepmd_backend.flag  # the model's own backend
        codeinfo.cmdline_params = [flag, 'test', '-m', potential.filename, '-s', DATA_DIR, '-n', '0', '-d', DETAIL]
        codeinfo.stdout_name = 'test.log'
        codeinfo.join_files = True

        calcinfo = datastructures.CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = [
            (potential.uuid, potential.filename, potential.filename),
            (self.inputs.dataset.uuid, '', DATA_DIR),
        ]
        calcinfo.retrieve_list = ['test.log', f'{DETAIL}.*.out']
        return calcinfo
