"""ExploreMDCalculation: one LAMMPS MD driven by a DeePMD ensemble that writes the ensemble's model deviation."""

from __future__ import annotations

import shutil

from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.plugins import CalculationFactory

from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
from aiida_liqcryst.exploration import lammps_input
from aiida_liqcryst.exploration.lammps_input import Condition, condition_error
from aiida_liqcryst.validators import code_error, missing_elements

MIN_MODELS = 2
STDOUT_FILENAME = 'lammps.out'
PLUGIN = 'liqcryst.explore_md'
RAW_PLUGIN = 'lammps.raw'  # aiida-lammps' calculation this one extends
LammpsRawCalculation = CalculationFactory(RAW_PLUGIN)
CODE_HINT = 'LAMMPS with the DeePMD plugin, e.g. lmp@localhost'


def ensemble_type_map(potentials) -> list[str] | None:
    """The type map shared by the models of ``potentials`` (a mapping), or None when they differ or are empty."""
    maps = {tuple(p.base.attributes.get('type_map', ())) for p in potentials.values()}
    return list(maps.pop()) if len(maps) == 1 else None


def potentials_error(potentials) -> str | None:
    """Why a mapping of DeepPotentialData cannot form a model-deviation ensemble, or None."""
    if potentials is None or len(potentials) < MIN_MODELS:
        count = 0 if potentials is None else len(potentials)
        return f'`potentials`: the model deviation needs at least {MIN_MODELS} models, got {count}'
    if ensemble_type_map(potentials) is None:
        maps = {key: p.base.attributes.get('type_map') for key, p in potentials.items()}
        return f'`potentials`: the models must share one type_map, got {maps}'
    backends = {key: p.deepmd_backend.name for key, p in potentials.items()}
    if len(set(backends.values())) > 1:
        return (
            f'`potentials`: the models of an ensemble must come from one deepmd-kit backend, got {backends}: train '
            'them with one `backend` (tf or pt), e.g. in one TrainEnsembleWorkChain'
        )
    return None


def structure_error(structure, type_map: list[str], name: str = 'structure') -> str | None:
    """Why ``structure`` cannot run with models of ``type_map`` (unknown elements, not 3D periodic), or None."""
    unknown = missing_elements(structure, type_map)
    if unknown:
        return (
            f'`{name}`: elements {unknown} are not in the models\' type_map {type_map}: remove them, or use '
            'models trained with them'
        )
    if not all(structure.pbc):
        return f'`{name}`: the MD needs a 3D periodic cell, got pbc={structure.pbc}'
    return None


def validate_parameters(value, _):
    if value is None:
        return None
    error = condition_error(value.get_dict())
    return f'`parameters`: {error}' if error else None


def validate_potentials(value, _):
    if not value:  # empty: reported by validate_inputs (where the port may also be excluded)
        return None
    return potentials_error(value)


def validate_inputs(inputs, ctx):
    if 'script' in inputs:
        return ('`script`: ExploreMD writes its own LAMMPS script from `parameters` (the condition) and the ensemble; '
                'for a script of your own use aiida-lammps\' `lammps.raw`')
    if (error := LammpsRawCalculation.validate_inputs(inputs, ctx)) is not None:  # unique `files` names
        return error
    if 'code' in ctx and 'remote_folder' not in inputs:
        code = inputs.get('code')
        # a code registered for aiida-lammps' raw calculation runs this one too: the same executable
        if code is None or code.default_calc_job_plugin != RAW_PLUGIN:
            if (error := code_error(code, PLUGIN, what=CODE_HINT)) is not None:
                return error
    if 'potentials' not in ctx:  # excluded by an exposing process that sets it itself
        return None
    if len(inputs.get('potentials', {})) < MIN_MODELS:
        return potentials_error(inputs.get('potentials', {}))
    if 'structure' not in inputs:
        return None
    type_map = ensemble_type_map(inputs['potentials'])
    if type_map is None:
        return None  # reported by the potentials validator
    return structure_error(inputs['structure'], type_map)


class ExploreMDCalculation(LammpsRawCalculation):
    """LAMMPS MD of ``structure`` with ``pair_style deepmd`` over an ensemble of frozen models.

    The first model (in key order) drives the dynamics; all of them give the force/virial model deviation,
    written every ``dump_every`` steps with the frame. A blown-up MD (lost atoms) still returns the frames
    and deviations before the blow-up, with exit code 310.

    Built on aiida-lammps' ``lammps.raw`` calculation: a code registered for it runs this one, its ``files`` /
    ``filenames`` inputs put extra files beside the script and ``settings.additional_retrieve_list`` retrieves more;
    the script itself is written here from the condition (``parameters``), so ``script`` is refused.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.inputs['script'].required = False  # written by prepare_for_submission
        spec.outputs['results'].required = False  # this parser's outputs are output_parameters & co
        spec.input('structure', valid_type=orm.StructureData, help='Starting configuration (3D periodic).')
        spec.input_namespace(
            'potentials',
            valid_type=DeepPotentialData,
            dynamic=True,
            validator=validate_potentials,
            help='The ensemble: at least two frozen DeePMD models sharing one type_map (first by key drives the MD).',
        )
        spec.input(
            'parameters',
            valid_type=orm.Dict,
            validator=validate_parameters,
            help='The MD condition: temperature (K), pressure (GPa), ensemble (npt|nvt), steps, timestep (ps), '
            'dump_every, thermo_every, seed, tau_t, tau_p (ps); see exploration.lammps_input.Condition.',
        )
        spec.inputs.validator = validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['parser_name'].default = 'liqcryst.explore_md'
        spec.inputs['metadata']['options']['input_filename'].default = lammps_input.SCRIPT_FILENAME
        spec.inputs['metadata']['options']['output_filename'].default = STDOUT_FILENAME
        spec.inputs['metadata']['options']['withmpi'].default = False

        spec.output('output_parameters', valid_type=orm.Dict, help='Run summary: frames, steps reached, errors, averages.')
        spec.output(
            'trajectory', valid_type=orm.TrajectoryData, required=False,
            help='Stored frames (cells, positions, symbols, steps); truncated when the MD blew up.',
        )
        spec.output(
            'model_deviation', valid_type=orm.ArrayData, required=False,
            help='Per stored frame: step, max/min/avg_devi_v (eV/atom) and max/min/avg_devi_f (eV/Å).',
        )
        spec.output(
            'thermo', valid_type=orm.ArrayData, required=False,
            help='Thermo table: step, temp (K), press (GPa), vol (Å^3), density (g/cm^3), pe, ke, etotal (eV).',
        )
        spec.default_output_node = 'output_parameters'

        spec.exit_code(301, 'ERROR_MISSING_LOG', message='log.lammps was not retrieved: LAMMPS did not start. {detail}')
        spec.exit_code(302, 'ERROR_NO_FRAMES', message='LAMMPS finished but no frame with a model deviation was written.')
        spec.exit_code(
            310, 'ERROR_MD_UNSTABLE',
            message='the MD blew up after step {step} (LAMMPS: "{error}"); the frames before it are in the outputs.',
        )
        spec.exit_code(320, 'ERROR_LAMMPS', message='LAMMPS stopped with an error: {error}')
        spec.exit_code(330, 'ERROR_INCOMPLETE', message='LAMMPS ended before the end of the run (killed?) after step {step}.')

    def prepare_for_submission(self, folder):
        condition = Condition.from_dict(self.inputs.parameters.get_dict())
        keys = sorted(self.inputs.potentials)
        type_map = ensemble_type_map(self.inputs.potentials)
        # data-file types follow the models' type_map, so `pair_coeff * * <type_map>` maps them by name
        # each model keeps its backend's suffix: deepmd's plugin picks the backend by it
        suffixes = [self.inputs.potentials[key].deepmd_backend.suffix for key in keys]
        model_files = [f'model_{index}{suffix}' for index, suffix in enumerate(suffixes)]
        with folder.open(lammps_input.DATA_FILENAME, 'w') as handle:
            lammps_input.write_data_file(self.inputs.structure.get_ase(), handle, type_map)
        with folder.open(self.options.input_filename, 'w') as handle:
            handle.write(lammps_input.exploration_script(condition, type_map, type_map, model_files))

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['-in', self.options.input_filename]
        codeinfo.stdout_name = self.options.output_filename
        codeinfo.withmpi = self.options.withmpi

        # aiida-lammps' extra files (e.g. tables a user's script variant reads), as its raw calculation writes them
        filenames = self.inputs['filenames'].get_dict() if 'filenames' in self.inputs else {}
        provenance_exclude_list = []
        for key, node in self.inputs.get('files', {}).items():
            filename = filenames.get(key, node.filename)
            with folder.open(filename, 'wb') as target, node.open(mode='rb') as source:
                shutil.copyfileobj(source, target)
            provenance_exclude_list.append(filename)

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.provenance_exclude_list = provenance_exclude_list
        # the models are copied from the repository on the compute side: not duplicated in the sandbox
        calcinfo.local_copy_list = [
            (self.inputs.potentials[key].uuid, self.inputs.potentials[key].filename, name)
            for key, name in zip(keys, model_files)
        ]
        calcinfo.retrieve_list = [
            lammps_input.LOG_FILENAME,
            lammps_input.DEVI_FILENAME,
            lammps_input.DUMP_FILENAME,
            self.options.output_filename,
        ]
        if 'settings' in self.inputs:
            calcinfo.retrieve_list += self.inputs.settings.get_dict().get('additional_retrieve_list', [])
        return calcinfo
