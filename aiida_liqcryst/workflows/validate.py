"""ValidateWorkChain: the potential against the reference on fresh liquid configurations (paper Fig. 1)."""

from __future__ import annotations

import tempfile

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction
from aiida.plugins import CalculationFactory, WorkflowFactory

from aiida_liqcryst.analysis.metrics import error_metrics
from aiida_liqcryst.analysis.plots import parity_plot
from aiida_liqcryst.calculations.explore_md import ensemble_type_map, potentials_error, structure_error
from aiida_liqcryst.deepmd.data.potential import DeepPotentialData
from aiida_liqcryst.validators import code_validator

ExploreMDWorkChain = WorkflowFactory('liqcryst.explore_md')
LabelWorkChain = WorkflowFactory('liqcryst.label')
DeepmdTestCalculation = CalculationFactory('liqcryst.deepmd.test')

# Every MD frame is a candidate: the window (0, 1e6) eV/Å keeps all, `max_candidates` picks how many.
ALL_FRAMES = (0.0, 1.0e6)


def validate_inputs(inputs, _):
    """The ensemble, the validated potential, the MD structures and the label type_map must fit together."""
    potentials = inputs.get('potentials') or {}
    wrong = sorted(key for key, node in potentials.items() if not isinstance(node, DeepPotentialData))
    if wrong:
        return f'`potentials`: {wrong} are not DeepPotentialData; give frozen DeePMD models (liqcryst.deepmd.potential)'
    if (error := potentials_error(potentials)) is not None:
        return error
    type_map = ensemble_type_map(potentials)
    potential = inputs.get('potential')
    if potential is not None and not isinstance(potential, DeepPotentialData):
        return f'`potential`: got a {type(potential).__name__}; give a frozen DeePMD model (DeepPotentialData)'
    for key, structure in (inputs.get('md', {}).get('structures') or {}).items():
        if (error := structure_error(structure, type_map, name=f'md.structures.{key}')) is not None:
            return error
    label_map = inputs.get('label', {}).get('type_map')
    if potential is not None and label_map is not None:
        unknown = sorted(set(label_map.get_list()) - set(potential.type_map))
        if unknown:
            return (
                f'`label.type_map` has elements {unknown} that `potential` (type_map {potential.type_map}) does not '
                'know: dp test needs them in its type_map; use the type_map of the potential'
            )
    return None


@calcfunction
def parity_report(parity: orm.ArrayData, reference_label: orm.Str):
    """RMSE, MAE, max error and Pearson r of energy per atom (meV/atom) and force components (eV/Å), and the plot."""
    e_ref, e_pred = parity.get_array('energy_reference'), parity.get_array('energy_predicted')
    f_ref, f_pred = parity.get_array('forces_reference').ravel(), parity.get_array('forces_predicted').ravel()
    energy = error_metrics(e_ref, e_pred)
    forces = error_metrics(f_ref, f_pred)
    metrics = {
        'nframes': len(e_ref),
        'energy_rmse_mev_per_atom': 1000 * energy['rmse'],
        'energy_mae_mev_per_atom': 1000 * energy['mae'],
        'energy_max_error_mev_per_atom': 1000 * energy['max_abs_error'],
        'energy_pearson_r': energy['pearson_r'],
        'force_rmse': forces['rmse'],
        'force_mae': forces['mae'],
        'force_max_error': forces['max_abs_error'],
        'force_pearson_r': forces['pearson_r'],
    }
    with tempfile.TemporaryDirectory() as folder:
        path = parity_plot(f'{folder}/parity.png', e_ref, e_pred, f_ref, f_pred, reference_label=reference_label.value)
        plot = orm.SinglefileData(path)
    return {'metrics': orm.Dict(metrics), 'parity_plot': plot}


class ValidateWorkChain(WorkChain):
    """Fresh MD of the melt with the ensemble, frames labeled by the reference, parity of one model against it.

    The configurations are new (other seeds, other MD than the training data), so the errors measure how
    well the potential describes the liquid, not how well it fits its training set.
    """

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            ExploreMDWorkChain, namespace='md', exclude=('potentials', 'eps_lo', 'eps_hi', 'selection'),
            namespace_options={'help': 'The MD that makes the liquid frames: code, structures, conditions; '
                                       '`max_candidates` is the number of frames validated.'},
        )
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures',),
                           namespace_options={'help': 'The reference engine that labels the frames.'})
        spec.input_namespace('potentials', valid_type=orm.Data, dynamic=True, help='The ensemble (>= 2 models) that runs the MD.')
        spec.input('potential', valid_type=orm.Data, help='The model validated (usually one of `potentials`).')
        spec.input('dp_code', valid_type=orm.AbstractCode, help='`dp` of deepmd-kit, for `dp test`.',
                   validator=code_validator('liqcryst.deepmd.test', port='dp_code', what="deepmd-kit's `dp`"))
        spec.inputs.validator = validate_inputs
        spec.outline(cls.run_md, cls.label, cls.test, cls.results)
        spec.output('dataset', valid_type=orm.Data, help='The validation frames with their reference labels.')
        spec.output('metrics', valid_type=orm.Dict, help='Energy (meV/atom) and force (eV/Å) errors: RMSE, MAE, max, Pearson r.')
        spec.output('parity_plot', valid_type=orm.SinglefileData, help='Parity plot (PNG) of energies per atom and force components.')
        spec.exit_code(401, 'ERROR_MD', message='the validation MD failed')
        spec.exit_code(402, 'ERROR_LABEL', message='labeling the validation frames failed')
        spec.exit_code(403, 'ERROR_TEST', message='dp test of the potential failed')

    def run_md(self):
        inputs = AttributeDict(self.exposed_inputs(ExploreMDWorkChain, namespace='md'))
        inputs.potentials = dict(self.inputs.potentials)
        inputs.eps_lo, inputs.eps_hi = (orm.Float(v) for v in ALL_FRAMES)
        inputs.selection = orm.Str('random')
        inputs.metadata = {'call_link_label': 'md'}
        return ToContext(md=self.submit(ExploreMDWorkChain, **inputs))

    def label(self):
        node = self.ctx.md
        if not node.is_finished_ok or 'candidates' not in node.outputs:
            return self.exit_codes.ERROR_MD
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.structures = dict(node.outputs.candidates.items())
        inputs.metadata = {'call_link_label': 'label'}
        return ToContext(labeling=self.submit(LabelWorkChain, **inputs))

    def test(self):
        node = self.ctx.labeling
        if not node.is_finished_ok or 'dataset' not in node.outputs:
            return self.exit_codes.ERROR_LABEL
        self.ctx.dataset = node.outputs.dataset
        inputs = {
            'code': self.inputs.dp_code,
            'potential': self.inputs.potential,
            'dataset': self.ctx.dataset,
            'metadata': {'call_link_label': 'dp_test'},
        }
        return ToContext(test=self.submit(DeepmdTestCalculation, **inputs))

    def results(self):
        node = self.ctx.test
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_TEST
        report = parity_report(node.outputs.parity, orm.Str(self.inputs.label.engine.value))
        self.out('dataset', self.ctx.dataset)
        self.out('metrics', report['metrics'])
        self.out('parity_plot', report['parity_plot'])
        m = report['metrics'].get_dict()
        self.report(
            f'{m["nframes"]} liquid frames: energy RMSE {m["energy_rmse_mev_per_atom"]:.1f} meV/atom, '
            f'force RMSE {m["force_rmse"]:.3f} eV/Å (max {m["force_max_error"]:.2f})'
        )
        return None
