"""AseCalculation: one batch of structures through one ASE task (label, relax, eos, md) with one calculator.

The calculator is the DeePMD model given as ``potential``, or the oracle (SevenNet-0) without one. The job runs
the ``aiida-liqcryst-ase`` console script (:mod:`aiida_liqcryst.engines.ase_tasks`, where the tasks and their
settings are documented).
"""

from __future__ import annotations

import io
import json

from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.engine import CalcJob

from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
from aiida_liqcryst.engines import ase_tasks
from aiida_liqcryst.validators import code_error, missing_elements


def validate_settings(value, _):
    if value is None:
        return None
    try:
        ase_tasks.check_settings(value.get_dict())
    except ValueError as exc:
        return f'`settings`: {exc}'
    return None


def validate_structures(value, _):
    if not value:
        return '`structures`: give at least one structure'
    return None


PLUGIN = 'liqcryst.ase'
CODE_HINT = 'the `aiida-liqcryst-ase` console script, e.g. ase@localhost'


def validate_inputs(inputs, ctx):
    if 'code' in ctx and 'remote_folder' not in inputs:
        if (error := code_error(inputs.get('code'), PLUGIN, what=CODE_HINT)) is not None:
            return error
    if 'structures' not in ctx or 'settings' not in ctx:
        return None
    structures = inputs.get('structures') or {}
    task = inputs['settings'].get_dict().get('task') if 'settings' in inputs else None
    if task in ase_tasks.TASKS:
        bad = [key for key, s in structures.items() if not all(s.pbc)]
        if bad:
            return f'`structures`: task {task!r} needs 3D periodic structures; not periodic: {bad}'
    potential = inputs.get('potential')
    if potential is not None:
        type_map = potential.base.attributes.get('type_map', None)
        if type_map:
            for key, structure in structures.items():
                unknown = missing_elements(structure, type_map)
                if unknown:
                    return (
                        f'`structures.{key}`: elements {unknown} are not in the type_map {type_map} of `potential`: '
                        'remove them, or use a potential trained with them'
                    )
    return None


class AseCalculation(CalcJob):
    """Run a batch of structures through one ASE task with a DeePMD model (``potential``) or the oracle.

    ``settings`` = ``{'task': 'label' | 'relax' | 'eos' | 'md', <parameters>}`` (see
    :data:`aiida_liqcryst.engines.ase_tasks.TASK_DEFAULTS`), checked before submission. A structure that
    fails is recorded in ``output_parameters['structures'][key]`` (status, error) and the others are kept:
    exit code 310 then, with all the outputs that were made.
    """

    _STDOUT = 'aiida.out'

    @classmethod
    def get_task_builder(cls, code, structures: dict, settings: dict, potential=None, options: dict | None = None,
                         call_link_label: str | None = None):
        """A builder of one task over ``structures`` (key -> StructureData): the one place the crystal workflows
        (EOSScan, VDOS, EvoSearch) make their jobs. Without ``potential`` the calculator is the oracle."""
        builder = cls.get_builder()
        builder.code = code
        builder.structures = dict(structures)
        builder.settings = orm.Dict(settings)
        if potential is not None:
            builder.potential = potential
        if options:
            builder.metadata.options = options
        if call_link_label:
            builder.metadata.call_link_label = call_link_label
        return builder

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, validator=validate_structures,
                             help='The batch: one 3D periodic structure per key (the key names its outputs).')
        spec.input('potential', valid_type=DeepPotentialData, required=False,
                   help='Frozen DeePMD model used as the calculator; without it the oracle (SevenNet-0) is used.')
        spec.input('settings', valid_type=orm.Dict, validator=validate_settings,
                   help="The task and its parameters: {'task': 'label'|'relax'|'eos'|'md', ...} (ase_tasks.TASK_DEFAULTS).")
        spec.inputs.validator = validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['withmpi'].default = False
        spec.inputs['metadata']['options']['parser_name'].default = 'liqcryst.ase'
        spec.inputs['metadata']['options']['input_filename'].default = ase_tasks.SETTINGS_FILE
        spec.inputs['metadata']['options']['output_filename'].default = cls._STDOUT

        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                              help='Final geometry per structure (relaxed; eos: relaxed at the start volume; md: last frame).')
        spec.output_namespace('results', valid_type=orm.ArrayData, dynamic=True, required=False,
                              help='Arrays per structure (label: energy, forces, virial; eos: volumes, energies, cells, '
                                   'positions...; relax: energy, volume, enthalpy, pressure; md: energies, temperature).')
        spec.output_namespace('trajectory', valid_type=orm.TrajectoryData, dynamic=True, required=False,
                              help='md: positions (Å), velocities (Å/fs), cells, times (fs) per structure.')
        spec.output('output_parameters', valid_type=orm.Dict,
                    help='Summary: task, calculator, per structure status, error and scalars (energy, volume, ...).')
        spec.default_output_node = 'output_parameters'

        spec.exit_code(300, 'ERROR_OUTPUT_MISSING', message='The summary file of the ASE tool was not retrieved.')
        spec.exit_code(301, 'ERROR_OUTPUT_UNREADABLE', message='The summary file could not be read: {error}')
        spec.exit_code(302, 'ERROR_TOOL_FAILED', message='The ASE tool could not start the batch: {error}')
        spec.exit_code(303, 'ERROR_INCOMPLETE', message='The job ended before every structure was done (killed?): {names}')
        spec.exit_code(310, 'ERROR_SOME_STRUCTURES_FAILED', message='Some structures failed: {failed}')
        spec.exit_code(311, 'ERROR_ALL_STRUCTURES_FAILED', message='Every structure failed: {failed}')

    def prepare_for_submission(self, folder):
        import ase.io

        names = sorted(self.inputs.structures)
        settings = ase_tasks.check_settings(self.inputs.settings.get_dict())
        settings['calculator'] = 'deepmd' if 'potential' in self.inputs else 'oracle'
        settings['names'] = names
        with folder.open(ase_tasks.SETTINGS_FILE, 'w', encoding='utf-8') as handle:
            json.dump(settings, handle, indent=1)
        buffer = io.StringIO()
        ase.io.write(buffer, [self.inputs.structures[name].get_ase() for name in names], format='extxyz')
        with folder.open(ase_tasks.STRUCTURES_FILE, 'w', encoding='utf-8') as handle:
            handle.write(buffer.getvalue())

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['.']
        codeinfo.stdout_name = self.options.output_filename
        codeinfo.withmpi = self.options.withmpi

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.local_copy_list = []
        if 'potential' in self.inputs:
            potential = self.inputs.potential
            target = f'{ase_tasks.MODEL_STEM}{potential.deepmd_backend.suffix}'
            calcinfo.local_copy_list.append((potential.uuid, potential.filename, target))
        calcinfo.retrieve_list = [self.options.output_filename, ase_tasks.OUTPUT_DIR]
        return calcinfo
