"""OracleCalculation: label a batch of structures with the oracle (SevenNet-0, a PBE stand-in).

Runs the ``aiida-liqcryst-oracle`` console script (:func:`aiida_liqcryst.engines.oracle.main`). Optionally the
structures are relaxed (FIRE, positions only) or run through a short Langevin MD whose frames are labeled.
"""

from __future__ import annotations

import io
import json

import ase.io
from aiida import orm
from aiida.common import CalcInfo, CodeInfo
from aiida.engine import CalcJob

from aiida_liqcryst.engines import oracle


def validate_settings(value, _):
    if value is None:
        return None
    error = oracle.validate_settings(value.get_dict())
    return f'`settings`: {error}' if error else None


def validate_structures(value, _):
    if not value:
        return '`structures`: give at least one structure to label'
    bad = [key for key, structure in value.items() if not all(structure.pbc)]
    if bad:
        return f'`structures`: the oracle labels 3D periodic cells (energy, forces, virial); not periodic: {bad}'
    return None


class OracleCalculation(CalcJob):
    """Energy, forces and virial of each structure of ``structures`` from the oracle, in one job.

    A structure the oracle cannot label (unknown element, non-finite numbers) is recorded in
    ``output_parameters['failed']`` with the reason and left out of the outputs; the job then finishes with
    exit code 310 and the other labels are output.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            validator=validate_structures,
            help='The structures to label, by key (the key names the outputs: `<key>`, or `<key>_f<i>` for MD frames).',
        )
        spec.input(
            'settings',
            valid_type=orm.Dict,
            required=False,
            validator=validate_settings,
            help='Optional: `relax_steps` (int) and `fmax` (eV/Å) to relax positions first; `md`: {steps, every, '
            'temperature (K), timestep (fs), friction (1/fs), seed} to label MD frames every `every` steps instead.',
        )
        options = spec.inputs['metadata']['options']
        options['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        options['parser_name'].default = 'liqcryst.oracle'
        options['input_filename'].default = oracle.STRUCTURES_FILE
        options['output_filename'].default = 'oracle.out'
        options['withmpi'].default = False

        spec.output_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            help='The geometry actually labeled, by key: the input, the relaxed structure, or MD frames `<key>_f<i>`.',
        )
        spec.output_namespace(
            'labels',
            valid_type=orm.ArrayData,
            dynamic=True,
            help='Labels by the same keys as `structures`: arrays energy (1,) eV, forces (N, 3) eV/Å, virial (3, 3) eV.',
        )
        spec.output(
            'output_parameters',
            valid_type=orm.Dict,
            help='Counts (n_structures, n_labeled, n_failed), failed keys with reasons, frames per key, timings.',
        )
        spec.default_output_node = 'output_parameters'

        spec.exit_code(300, 'ERROR_MISSING_OUTPUT', message='the oracle wrote no {filename}: it did not finish. {detail}')
        spec.exit_code(301, 'ERROR_READING_OUTPUT', message='the oracle output {filename} could not be read: {exception}')
        spec.exit_code(
            310, 'ERROR_SOME_STRUCTURES_FAILED',
            message='{count} structure(s) could not be labeled and are left out: {failed}; the others are output.',
        )
        spec.exit_code(311, 'ERROR_ALL_STRUCTURES_FAILED', message='no structure could be labeled: {failed}')

    def prepare_for_submission(self, folder):
        images = []
        for key in sorted(self.inputs.structures):
            atoms = self.inputs.structures[key].get_ase()
            atoms.info[oracle.KEY] = key
            images.append(atoms)
        buffer = io.StringIO()
        ase.io.write(buffer, images, format='extxyz')
        with folder.open(oracle.STRUCTURES_FILE, 'w') as handle:
            handle.write(buffer.getvalue())
        settings = self.inputs.settings.get_dict() if 'settings' in self.inputs else {}
        with folder.open(oracle.SETTINGS_FILE, 'w') as handle:
            json.dump(settings, handle)

        codeinfo = CodeInfo()
        codeinfo.code_uuid = self.inputs.code.uuid
        codeinfo.cmdline_params = ['--structures', oracle.STRUCTURES_FILE, '--settings', oracle.SETTINGS_FILE]
        codeinfo.stdout_name = self.options.output_filename
        codeinfo.stderr_name = 'oracle.err'
        codeinfo.withmpi = self.options.withmpi

        calcinfo = CalcInfo()
        calcinfo.codes_info = [codeinfo]
        calcinfo.retrieve_list = [
            oracle.LABELS_FILE,
            oracle.RESULTS_FILE,
            oracle.LOG_FILE,
            self.options.output_filename,
            'oracle.err',
        ]
        return calcinfo
