"""CP2K (aiida-cp2k) as a reference engine: one ENERGY_FORCE single point per structure, each wrapped in
``Cp2kLabelWorkChain`` (aiida-cp2k's restart work chain with an SCF handler), PBE/GTH/MOLOPT at Gamma.

``parameters``: keyword arguments of :func:`aiida_liqcryst.engines.cp2k.cp2k_parameters` (``CP2K_KWARGS``) and
``sections``, raw CP2K input sections merged on top. ``settings``: the ``settings`` of aiida-cp2k's calculation.
"""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.engines import cp2k as cp2k_engine
from aiida_liqcryst.protocols import recursive_merge
from aiida_liqcryst.reference import Job, Outcome, ReferenceEngine, failed_process, is_finite, label_node
from aiida_liqcryst.workflows.cp2k_label import PARSER_NAME

CP2K_KWARGS = ('cutoff', 'rel_cutoff', 'eps_scf', 'max_scf', 'outer_max_scf', 'basis_set')
#: call link label of the CP2K work chain of the i-th structure (sorted keys)
JOB_LINK = 'cp2k_{index}'


def cp2k_input_sections(structure, parameters: dict) -> dict:
    """CP2K input sections for ``structure`` from the cp2k ``parameters`` (cp2k_parameters kwargs + ``sections``)."""
    kwargs = {key: parameters[key] for key in CP2K_KWARGS if key in parameters}
    sections = cp2k_engine.cp2k_parameters(structure, **kwargs)
    return recursive_merge(sections, parameters.get('sections', {}))


@calcfunction
def cp2k_labels(retrieved: orm.FolderData) -> orm.ArrayData:
    """The label (energy, forces, virial) parsed from a CP2K ENERGY_FORCE run's retrieved output."""
    return label_node(cp2k_engine.parse_cp2k_labels(retrieved))


class Cp2kEngine(ReferenceEngine):
    name = 'cp2k'
    calc_plugin = 'cp2k'
    parameter_keys = CP2K_KWARGS + ('sections',)
    setting_keys = None  # aiida-cp2k's own settings, checked by its calculation

    def check(self, parameters, settings, structures):
        message = super().check(parameters, settings, structures)
        if message:
            return message
        elements = {element for structure in structures.values() for element in structure.get_symbols_set()}
        for element in sorted(elements):
            try:
                cp2k_engine.basis_valence(element, parameters.get('basis_set', cp2k_engine.BASIS_SET))
            except (ValueError, OSError) as exc:
                return f'`structures`: CP2K cannot label {element}: {exc}'
        return None

    def jobs(self, structures, code, parameters, settings, options, batch_size, max_iterations):
        Cp2kLabelWorkChain = WorkflowFactory('liqcryst.cp2k_label')
        # the label parser (liqcryst.cp2k) gives an unconverged SCF its exit code, which the SCF handler filters on
        options = recursive_merge({'withmpi': False, 'parser_name': PARSER_NAME}, options)
        cp2k_settings = orm.Dict(settings) if settings else None
        by_elements = {}  # one parameters Dict per element set: most structures share it
        jobs = []
        for index, key in enumerate(sorted(structures)):
            structure = structures[key]
            elements = tuple(sorted(structure.get_symbols_set()))
            if elements not in by_elements:
                by_elements[elements] = orm.Dict(cp2k_input_sections(structure, parameters))
            cp2k = {'code': code, 'structure': structure, 'parameters': by_elements[elements],
                    'metadata': {'options': options}}
            if cp2k_settings is not None:
                cp2k['settings'] = cp2k_settings
            inputs = {
                'cp2k': cp2k,
                'max_iterations': orm.Int(max_iterations),
                # aiida-cp2k's restart of incomplete runs (walltime) is disabled by default there
                'handler_overrides': orm.Dict({'restart_incomplete_calculation': {'enabled': True}}),
            }
            jobs.append(Job(JOB_LINK.format(index=index), Cp2kLabelWorkChain, inputs, [key]))
        return jobs

    def collect(self, name, keys, node, structures):
        (key,) = keys
        if not node.is_finished_ok:
            return Outcome(failed={key: failed_process(node)})
        try:
            parsed = cp2k_engine.parse_cp2k_labels(node.outputs.retrieved)
        except cp2k_engine.Cp2kOutputError as exc:
            return Outcome(failed={key: f'CP2K output <{node.pk}>: {exc}'})
        if not is_finite(parsed):
            return Outcome(failed={key: f'CP2K output <{node.pk}>: non-finite label'})
        labels = cp2k_labels(node.outputs.retrieved, metadata={'call_link_label': f'labels_{name}'})
        return Outcome(labels={key: (structures[key], labels)}, seconds=float(parsed.get('seconds') or 0.0))
