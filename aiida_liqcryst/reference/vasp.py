"""VASP (aiida-vasp's ``vasp.vasp`` work chain) as a reference engine: one PBE single point per structure.

``parameters``: ``incar`` (aiida-vasp's parameters), ``potential_family`` (an uploaded PAW-PBE POTCAR family) and
optionally ``potential_mapping`` (element -> POTCAR symbol), ``kpoints_mesh`` (default Gamma only, as the paper) and
``kpoints_offset`` (the mesh's shift in fractions of a mesh spacing, default 0: Gamma-centred). aiida-vasp writes
every mesh as a Gamma-centred KPOINTS with this shift, so a Monkhorst-Pack mesh is ``kpoints_offset`` 0.5 along
even divisions and 0 along odd ones (VASP's own ``shift`` in vasprun.xml). ``settings``: aiida-vasp's settings
(parser settings are merged over the energies and forces needed).
"""

from __future__ import annotations

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.protocols import recursive_merge
from aiida_liqcryst.reference import Job, Outcome, ReferenceEngine, failed_process, is_finite, label_node

GPA_PER_KBAR = 0.1
#: call link label of the VASP work chain of the i-th structure (sorted keys)
JOB_LINK = 'vasp_{index}'
MISC_KEYS = ('total_energies', 'forces', 'stress')


def vasp_inputs(code, structure, potential_family: str, parameters: dict, options: dict | None = None,
                potential_mapping: dict | None = None, settings: dict | None = None, kpoints_mesh=(1, 1, 1),
                kpoints_offset=(0.0, 0.0, 0.0)) -> dict:
    """Inputs of aiida-vasp's ``vasp.vasp`` work chain for one PBE single point (Gamma only by default).

    :param parameters: ``{'incar': {...}}`` (aiida-vasp's parameters namespaces), e.g. ENCUT 520, ISMEAR 0, SIGMA 0.05.
    :param potential_family: name of an uploaded PAW-PBE POTCAR family (``aiida-vasp potcar uploadfamily``).
    :param potential_mapping: element -> POTCAR symbol; default the element itself.
    :param kpoints_offset: shift of the mesh in fractions of a mesh spacing (KPOINTS ``Gamma`` + this shift; 0.5 along
        an even division gives the Monkhorst-Pack points).
    """
    kpoints = orm.KpointsData()
    kpoints.set_kpoints_mesh(list(kpoints_mesh), offset=[float(x) for x in kpoints_offset])
    elements = sorted({structure.get_kind(site.kind_name).symbol for site in structure.sites})
    mapping = {element: element for element in elements}
    mapping.update(potential_mapping or {})
    parser = {'parser_settings': {'energy_type': ['energy_free', 'energy_extrapolated']}}
    return {
        'code': code,
        'structure': structure,
        'parameters': orm.Dict({'incar': parameters.get('incar', {})}),
        'kpoints': kpoints,
        'potential_family': orm.Str(potential_family),
        'potential_mapping': orm.Dict({kind: mapping[structure.get_kind(kind).symbol] for kind in structure.get_kind_names()}),
        'settings': orm.Dict(recursive_merge(parser, settings or {})),
        'calc': {'metadata': {'options': dict(options or {})}},
    }


def pstress_kbar(parameters: dict) -> float:
    """PSTRESS of the INCAR (kB), 0 when not set."""
    incar = {key.lower(): value for key, value in parameters.get('incar', parameters).items()}
    return float(incar.get('pstress', 0.0))


def vasp_label_arrays(misc: dict, volume: float, pstress: float = 0.0) -> dict:
    """Label from aiida-vasp's ``misc`` output: free energy (TOTEN), forces, virial from VASP's stress.

    VASP's stress (kB) is pressure-like (positive = compressed), like CP2K's: W = +sigma * V. With PSTRESS the
    ionic-step free energy in vasprun.xml includes P*V, which is removed (as ASE does).
    """
    from ase.units import GPa

    energies = misc['total_energies']
    energy = energies['energy_free'] if 'energy_free' in energies else energies['energy_extrapolated']
    energy = float(energy) - pstress * GPA_PER_KBAR * GPa * volume
    stress = np.asarray(misc['stress'], dtype=float).reshape(3, 3)
    return {
        'energy': energy,
        'forces': np.asarray(misc['forces'], dtype=float).reshape(-1, 3),
        'virial': stress * GPA_PER_KBAR * GPa * volume,
    }


@calcfunction
def vasp_labels(misc: orm.Dict, structure: orm.StructureData, parameters: orm.Dict) -> orm.ArrayData:
    """The label (energy, forces, virial) from a VASP single point's ``misc`` output."""
    return label_node(vasp_label_arrays(misc.get_dict(), structure.get_cell_volume(), pstress_kbar(parameters.get_dict())))


def vasp_failure(node) -> str:
    """Why a ``vasp.vasp`` work chain gave no label: its exit status and message, those of its last VASP run, and for
    an electronic loop that did not converge, the steps run against NELM (aiida-vasp's ``misc.run_status``)."""
    reason = failed_process(node)
    calculations = sorted((child for child in node.called if isinstance(child, orm.CalcJobNode)), key=lambda c: c.ctime)
    if not calculations:
        return reason
    last = calculations[-1]
    exit_status = last.exit_status if last.exit_status is not None else last.process_state.value
    reason += (f'; last of {len(calculations)} VASP run(s) <{last.pk}>: exit {exit_status} '
               f'{last.exit_message or ""}').rstrip()
    status = last.outputs.misc.get_dict().get('run_status', {}) if 'misc' in last.outputs else {}
    if status.get('electronic_converged') is False and status.get('finished', True):
        steps = (status.get('last_iteration_index') or [None, None])[-1]
        reason += (f'; electronic (SCF) loop not converged: {steps} steps reached NELM = {status.get("nelm")}'
                   if steps is not None else '; electronic (SCF) loop not converged')
    return reason


class VaspEngine(ReferenceEngine):
    name = 'vasp'
    calc_plugin = 'vasp.vasp'
    parameter_keys = ('incar', 'potential_family', 'potential_mapping', 'kpoints_mesh', 'kpoints_offset')
    setting_keys = None  # aiida-vasp's own settings

    def check(self, parameters, settings, structures):
        message = super().check(parameters, settings, structures)
        if message:
            return message
        family = parameters.get('potential_family')
        if not family:
            return '`parameters.vasp.potential_family`: the VASP engine needs the name of an uploaded PAW-PBE POTCAR family'
        mesh = parameters.get('kpoints_mesh', [1, 1, 1])
        if not (isinstance(mesh, (list, tuple)) and len(mesh) == 3
                and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in mesh)):
            return f'`parameters.vasp.kpoints_mesh`: three positive integers, got {mesh!r}'
        offset = parameters.get('kpoints_offset', [0.0, 0.0, 0.0])
        if not (isinstance(offset, (list, tuple)) and len(offset) == 3
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x < 1 for x in offset)):
            return (f'`parameters.vasp.kpoints_offset`: three numbers in [0, 1), the shift of the mesh in fractions '
                    f'of a mesh spacing (0: Gamma-centred; 0.5 along an even division: Monkhorst-Pack), got {offset!r}')
        from aiida_vasp.data.potcar import PotcarData

        if PotcarData.get_potcar_group(family) is None:
            return (f'`parameters.vasp.potential_family`: no POTCAR family {family!r} in this profile; upload one with '
                    '`aiida-vasp potcar uploadfamily`')
        return None

    def jobs(self, structures, code, parameters, settings, options, batch_size, max_iterations):
        VaspWorkChain = WorkflowFactory('vasp.vasp')
        jobs = []
        for index, key in enumerate(sorted(structures)):
            inputs = vasp_inputs(code, structures[key], parameters['potential_family'], parameters, options,
                                 potential_mapping=parameters.get('potential_mapping'), settings=settings,
                                 kpoints_mesh=parameters.get('kpoints_mesh', (1, 1, 1)),
                                 kpoints_offset=parameters.get('kpoints_offset', (0.0, 0.0, 0.0)))
            inputs['max_iterations'] = orm.Int(max_iterations)
            jobs.append(Job(JOB_LINK.format(index=index), VaspWorkChain, inputs, [key]))
        return jobs

    def collect(self, name, keys, node, structures):
        (key,) = keys
        if not node.is_finished_ok or 'misc' not in node.outputs:
            return Outcome(failed={key: vasp_failure(node)})
        misc = node.outputs.misc
        missing = set(MISC_KEYS) - set(misc.get_dict())
        if missing:
            return Outcome(failed={key: f'VASP output <{node.pk}> lacks {sorted(missing)}'})
        parameters = node.inputs.parameters
        label = vasp_label_arrays(misc.get_dict(), structures[key].get_cell_volume(), pstress_kbar(parameters.get_dict()))
        if not is_finite(label):
            return Outcome(failed={key: f'VASP output <{node.pk}>: non-finite label'})
        labels = vasp_labels(misc, structures[key], parameters, metadata={'call_link_label': f'labels_{name}'})
        seconds = float(misc.get_dict().get('run_stats', {}).get('elapsed_time', 0.0) or 0.0)
        return Outcome(labels={key: (structures[key], labels)}, seconds=seconds)
