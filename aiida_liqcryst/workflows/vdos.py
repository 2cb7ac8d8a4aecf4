"""VDOSWorkChain: vibrational density of states of a crystal with DeePMD potentials and with the reference (Fig. 2 insets)."""

from __future__ import annotations

import tempfile

import numpy as np
from aiida import orm
from aiida.engine import ToContext, WorkChain, calcfunction
from aiida.plugins import CalculationFactory

from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
from aiida_liqcryst.engines import ase_tasks
from aiida_liqcryst.validators import code_validator, missing_elements

AseCalculation = CalculationFactory('liqcryst.ase')
ASE_CODE = code_validator('liqcryst.ase', what='the `aiida-liqcryst-ase` console script, e.g. ase@localhost')

REFERENCE = 'reference'
# A thermalised NVE run: the VDOS of a Langevin run is broadened by the friction.
DEFAULT_PARAMETERS = {
    'temperature': 300.0, 'steps': 1000, 'timestep': 1.0, 'every': 2, 'ensemble': 'nve',
    'equilibration_steps': 200, 'supercell': [1, 1, 1], 'seed': 0,
}


def md_settings(parameters: dict | None) -> dict:
    """The ``md`` task settings of :data:`DEFAULT_PARAMETERS` updated with ``parameters`` (checked)."""
    return ase_tasks.check_settings({'task': 'md', **DEFAULT_PARAMETERS, **(parameters or {})})


def validate_parameters(value, _):
    if value is None:
        return None
    try:
        md_settings(value.get_dict())
    except ValueError as exc:
        return f'`parameters`: {exc}'
    return None


def validate_potentials(value, _):
    if not value:
        return '`potentials`: give at least one DeePMD potential to compare with the reference'
    if REFERENCE in value:
        return f'`potentials`: the key {REFERENCE!r} is reserved for the reference method; rename it'
    return None


def validate_inputs(inputs, ctx):
    if 'structure' not in inputs or 'potentials' not in inputs:
        return None
    structure = inputs['structure']
    if not all(structure.pbc):
        return f'`structure`: the MD needs a 3D periodic cell, got pbc={structure.pbc}'
    models = dict(inputs['potentials'])
    if 'reference_potential' in inputs:
        models[REFERENCE] = inputs['reference_potential']
    for key, potential in models.items():
        type_map = potential.base.attributes.get('type_map', None) or []
        unknown = missing_elements(structure, type_map)
        if unknown:
            return (
                f'`structure`: elements {unknown} are not in the type_map {type_map} of potential {key!r}: '
                'use a structure of its elements, or a potential trained with them'
            )
    return None


@calcfunction
def compute_vdos(fmax: orm.Float, **trajectories):
    """VDOS (mass-weighted, unit area, THz) of each trajectory and its overlap with the ``reference`` one.

    ``trajectories``: TrajectoryData by method (``reference`` and one per potential), velocities in Å/fs.
    ``fmax`` (THz) limits the overlap; 0 for the whole spectrum.
    """
    from aiida_liqcryst.analysis import plots
    from aiida_liqcryst.analysis.vdos import mean_frequency, vdos_of_trajectory, vdos_overlap

    spectra = {}
    results = {}
    arrays = orm.ArrayData()
    for key, trajectory in trajectories.items():
        freqs, dos = vdos_of_trajectory(
            trajectory.get_array('velocities'), trajectory.get_array('times'), masses=trajectory.get_array('masses')
        )
        spectra[key] = (freqs, dos)
        arrays.set_array(f'frequencies_{key}', freqs)
        arrays.set_array(f'vdos_{key}', dos)
        temperatures = trajectory.get_array('temperature')
        results[key] = {
            'mean_frequency': mean_frequency(freqs, dos),
            'mean_temperature': float(np.mean(temperatures[1:] if temperatures.size > 1 else temperatures)),
            'frames': int(trajectory.numsteps),
        }
    top = fmax.value or None
    for key, (freqs, dos) in spectra.items():
        if key != REFERENCE:
            results[key]['overlap'] = vdos_overlap(*spectra[REFERENCE], freqs, dos, fmax=top)
    with tempfile.TemporaryDirectory() as tmp:
        path = plots.vdos_overlay(f'{tmp}/vdos.png', spectra, fmax=top)
        figure = orm.SinglefileData(path, filename='vdos.png')
    return {'results': orm.Dict(results), 'spectra': arrays, 'figure': figure}


class VDOSWorkChain(WorkChain):
    """MD of one crystal with each DeePMD potential and with the reference, then VACF -> VDOS -> overlap.

    All runs start from the same structure (repeated by ``supercell``), temperature and seed; the reference is
    the oracle unless ``reference_potential`` is given. The VDOS is the Fourier transform of the mass-weighted
    velocity autocorrelation (:mod:`aiida_liqcryst.analysis.vdos`); the figure of merit is the overlap
    ∫ min(g_potential, g_reference) dν of the unit-area spectra (1 identical, 0 disjoint).
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('code', valid_type=orm.AbstractCode, validator=ASE_CODE,
                   help='The `aiida-liqcryst-ase` code.')
        spec.input('structure', valid_type=orm.StructureData, help='The crystal; every MD starts from it.')
        spec.input_namespace('potentials', valid_type=DeepPotentialData, dynamic=True, validator=validate_potentials,
                             help='DeePMD potentials to compare with the reference, by label.')
        spec.input('reference_potential', valid_type=DeepPotentialData, required=False,
                   help='Reference model; without it the oracle (SevenNet-0) is the reference.')
        spec.input('parameters', valid_type=orm.Dict, required=False, validator=validate_parameters,
                   help=f'MD settings of the ase `md` task (temperature K, steps, timestep fs, every, ensemble, '
                        f'equilibration_steps, supercell, seed); defaults {DEFAULT_PARAMETERS}.')
        spec.input('fmax', valid_type=orm.Float, default=lambda: orm.Float(0.0),
                   help='Upper frequency (THz) of the overlap; 0 for the whole spectrum.')
        spec.input('options', valid_type=dict, non_db=True, required=False,
                   help='metadata.options of the AseCalculations (e.g. max_wallclock_seconds).')
        spec.inputs.validator = validate_inputs
        spec.outline(cls.run_md, cls.inspect_md, cls.analyse)
        spec.output('results', valid_type=orm.Dict,
                    help='Per method: mean_frequency (THz), mean_temperature (K), frames; per potential: overlap.')
        spec.output('spectra', valid_type=orm.ArrayData, help='frequencies_<method> (THz) and vdos_<method> (1/THz).')
        spec.output('figure', valid_type=orm.SinglefileData, help='The VDOS overlay (PNG).')
        spec.exit_code(401, 'ERROR_MD_FAILED', message='The MD of {methods} failed.')
        spec.exit_code(402, 'ERROR_ANALYSIS_FAILED', message='The VDOS could not be computed: {error}')

    def _md(self, potential=None):
        settings = md_settings(self.inputs.parameters.get_dict() if 'parameters' in self.inputs else None)
        settings = {k: v for k, v in settings.items() if k not in ase_tasks.PRIVATE or k == 'task'}
        return AseCalculation.get_task_builder(self.inputs.code, {'structure': self.inputs.structure}, settings,
                                               potential, self.inputs.get('options'))

    def run_md(self):
        calcs = {}
        for key, potential in self.inputs.potentials.items():
            calcs[f'md_{key}'] = self.submit(self._md(potential))
        calcs[f'md_{REFERENCE}'] = self.submit(self._md(self.inputs.get('reference_potential')))
        for key, node in calcs.items():
            self.report(f'{key}: {node.process_label}<{node.pk}>')
        return ToContext(**calcs)

    def inspect_md(self):
        failed = [key for key in [*self.inputs.potentials, REFERENCE] if not self.ctx[f'md_{key}'].is_finished_ok]
        if failed:
            return self.exit_codes.ERROR_MD_FAILED.format(methods=', '.join(failed))
        return None

    def analyse(self):
        trajectories = {key: self.ctx[f'md_{key}'].outputs.trajectory.structure for key in [*self.inputs.potentials, REFERENCE]}
        try:
            outputs = compute_vdos(fmax=self.inputs.fmax, **trajectories)
        except ValueError as exc:
            return self.exit_codes.ERROR_ANALYSIS_FAILED.format(error=exc)
        self.out_many(outputs)
        for key, values in outputs['results'].get_dict().items():
            line = f'{key}: mean frequency {values["mean_frequency"]:.2f} THz at {values["mean_temperature"]:.0f} K'
            if 'overlap' in values:
                line += f', overlap with the reference {values["overlap"]:.3f}'
            self.report(line)
        return None
