"""StudyWorkChain: the paper at reduced scale in one process, judged on data the potentials did not choose.

held-out reference melt -> LP and HP active loops (each ends with a production training, scored on the held-out
set) -> E(V) of the polymorph library with both production potentials against the reference, VDOS (Fig. 2) ->
structure searches with the HP potential, re-labeled by the reference (Fig. 3-4) -> the headline figures.
Everything a report or a figure needs is in the graph below this process (``aiida_liqcryst.report``).
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.deepmd.calcfunctions import select_by_density
from aiida_liqcryst.deepmd.data.dataset import LabeledDatasetData, frames_in_density_range
from aiida_liqcryst.protocols import ProtocolMixin
from aiida_liqcryst.workflows.active_loop import TRAIN_LINK

ActiveLoopWorkChain = WorkflowFactory('liqcryst.active_loop')
EOSScanWorkChain = WorkflowFactory('liqcryst.eos_scan')
EvoSearchWorkChain = WorkflowFactory('liqcryst.evo_search')
ReferenceMeltWorkChain = WorkflowFactory('liqcryst.reference_melt')

# call link labels of the study's sub-processes (the report reads them)
HOLDOUT_LINK = 'holdout'
LOOP_LINKS = {'LP': 'loop_lp', 'HP': 'loop_hp'}
EOS_LINK = 'eos'
SEARCH_LINK = 'search_{index}'
LOOP_HOLDOUT_LINK = 'holdout_{label}'  # the selection of a loop's own held-out frames


def validate_holdout_densities(value, _):
    if value is None:
        return None
    bounds = value.get_dict()
    if unknown := set(bounds) - set(LOOP_LINKS):
        return f'`holdout_densities` keys must be among {sorted(LOOP_LINKS)}, got {sorted(unknown)}'
    for label, pair in bounds.items():
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(x, (int, float)) for x in pair)
                or not 0 < pair[0] < pair[1]):
            return f'`holdout_densities.{label}` must be [low, high] g/cm^3 with 0 < low < high, got {pair}'
    return None


def validate_inputs(inputs, _):
    has_melt = bool(inputs.get('holdout'))
    if has_melt == ('holdout_dataset' in inputs):
        return 'give either `holdout` (the reference MD that makes the held-out set) or `holdout_dataset` (one made before)'
    pressures = inputs['search_pressures'].get_list() if 'search_pressures' in inputs else []
    if any(not isinstance(p, (int, float)) or not -10 <= p <= 500 for p in pressures):
        return f'`search_pressures` must be numbers in [-10, 500] GPa, got {pressures}'
    return None


def crystal_potential(loop: orm.WorkflowNode):
    """The potential a loop hands to the crystal steps: its production model, else the ensemble's first model."""
    if 'production' in loop.outputs and 'model_0' in loop.outputs.production:
        return loop.outputs.production.model_0
    return loop.outputs.potentials.model_0


def loop_summary(loop: orm.WorkflowNode) -> orm.Dict:
    """The summary of the model that goes on to the crystals (production, else the final ensemble)."""
    if 'production' in loop.outputs and 'summary' in loop.outputs.production:
        return loop.outputs.production.summary
    train = loop.base.links.get_outgoing(link_label_filter=TRAIN_LINK.format(iteration=len(loop.outputs.iterations.get_list()) - 1)).one()
    return train.node.outputs.summary


@calcfunction
def study_headlines(pressures: orm.List, window: orm.Float, hp_summary: orm.Dict, lp_summary: orm.Dict, **nodes):
    """The headline figures (:func:`aiida_liqcryst.analysis.study.study_headlines`) and their targets.

    ``nodes``: ``eos_HP``/``eos_LP`` (E(V) tables), ``ranking_<i>`` and ``energies_<i>`` (relabel_energies) of the
    search at ``pressures[i]``.
    """
    from aiida_liqcryst.analysis.study import compare_with_targets
    from aiida_liqcryst.analysis.study import study_headlines as headlines_of

    eos = {key[len('eos_'):]: node.get_dict() for key, node in nodes.items() if key.startswith('eos_')}
    searches = {}
    for index, pressure in enumerate(pressures.get_list()):
        if f'ranking_{index}' not in nodes:
            continue
        energies = nodes.get(f'energies_{index}')
        searches[float(pressure)] = {
            'ranking': nodes[f'ranking_{index}'].get_dict(),
            'energies': None if energies is None else {n: energies.get_array(n) for n in ('potential', 'reference', 'enthalpy')},
        }
    headlines = headlines_of(hp_summary.get_dict(), lp_summary.get_dict(), eos, searches, window=window.value)
    return orm.Dict({'headlines': headlines, 'targets': compare_with_targets(headlines)})


class StudyWorkChain(ProtocolMixin, WorkChain):
    """The transfer study: do potentials trained on the melt only describe and find the crystals?

    The held-out set is made once, by the reference's own MD (``holdout``), or reused (``holdout_dataset``); both
    loops are scored on it every iteration, and so are their production models. The crystal steps use each loop's
    production model (its final ensemble's first model when the loop has no production training).
    """

    _protocol_file = 'study'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(ReferenceMeltWorkChain, namespace='holdout', namespace_options={
            'required': False, 'populate_defaults': False,
            'help': 'The reference MD that makes the held-out liquid set (when `holdout_dataset` is not given).'})
        spec.input('holdout_dataset', valid_type=LabeledDatasetData, required=False,
                   help='A held-out set made before (e.g. by an earlier study), reused instead of running `holdout`.')
        spec.input('holdout_densities', valid_type=orm.Dict, required=False, validator=validate_holdout_densities,
                   help='Per loop (LP, HP), [low, high] g/cm^3: the loop is scored, and its trust levels set, on the '
                        'held-out frames in that range only, the conditions it explores (default: all frames).')
        for label in LOOP_LINKS:
            spec.expose_inputs(ActiveLoopWorkChain, namespace=label.lower(), exclude=('train.holdout',),
                               namespace_options={'help': f'The {label} active loop (its held-out set is the study\'s).'})
        spec.expose_inputs(EOSScanWorkChain, namespace='eos', exclude=('potentials',),
                           namespace_options={'help': 'E(V) of the polymorphs with the LP and HP potentials vs the reference.'})
        spec.expose_inputs(EvoSearchWorkChain, namespace='search', exclude=('potential', 'pressure'),
                           namespace_options={'help': 'The structure searches with the HP potential (one per pressure).'})
        spec.input('search_pressures', valid_type=orm.List, default=lambda: orm.List([0.0, 10.0]),
                   help='Pressures (GPa) of the structure searches.')
        spec.inputs.validator = validate_inputs
        spec.outline(
            if_(cls.needs_holdout)(cls.make_holdout, cls.inspect_holdout),
            cls.run_loops,
            cls.inspect_loops,
            cls.run_crystals,
            cls.inspect_crystals,
            cls.results,
        )
        spec.output('holdout', valid_type=orm.Data, help='The held-out liquid frames (reference MD).')
        spec.output('headlines', valid_type=orm.Dict,
                    help='The headline figures (`headlines`) and each target with its measured value (`targets`).')
        spec.exit_code(401, 'ERROR_HOLDOUT', message='making the held-out set failed: {message}')
        spec.exit_code(402, 'ERROR_LOOP', message='the {label} active loop failed: {message}')
        spec.exit_code(403, 'ERROR_CRYSTALS', message='crystal steps failed: {message}')
        spec.exit_code(404, 'ERROR_HOLDOUT_EMPTY',
                       message='no held-out frame lies in the {label} loop\'s `holdout_densities` {bounds} g/cm^3')

    @classmethod
    def get_builder_from_protocol(cls, codes: dict, composition: dict, engine: str = 'oracle', protocol=None,
                                  overrides: dict | None = None, holdout_dataset=None):
        """A builder whose children come from their own protocols, named by this one (``study.yaml``).

        :param codes: ``dp``, ``lmp``, ``engine`` (the reference's code) and ``ase`` (crystal steps).
        :param holdout_dataset: reuse this held-out set instead of making one.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        if holdout_dataset is None:
            melt = ReferenceMeltWorkChain.get_builder_from_protocol(
                codes['engine'], composition, engine=engine, protocol=inputs['holdout']['protocol'],
                overrides=inputs['holdout'].get('overrides'), lammps_code=codes['lmp'])
            builder.holdout = melt._inputs(prune=True)
        else:
            builder.holdout_dataset = holdout_dataset
        for label in LOOP_LINKS:
            loop = ActiveLoopWorkChain.get_builder_from_protocol(
                codes, composition, engine=engine, protocol=inputs['loop']['protocol'], pressure_range=label,
                overrides=inputs['loop'].get('overrides'))
            setattr(builder, label.lower(), loop._inputs(prune=True))
        # the potentials are made by the loops: the children's builders leave them out
        eos = EOSScanWorkChain.get_builder_from_protocol(codes['ase'], None, reference=engine, reference_code=codes['engine'],
                                                         protocol=inputs['eos']['protocol'],
                                                         polymorphs=inputs['eos'].get('polymorphs'),
                                                         overrides=inputs['eos'].get('overrides'))
        builder.eos = {k: v for k, v in eos._inputs(prune=True).items() if k != 'potentials'}
        search = EvoSearchWorkChain.get_builder_from_protocol(codes['ase'], None, composition,
                                                              reference=engine, reference_code=codes['engine'],
                                                              protocol=inputs['search']['protocol'],
                                                              overrides=inputs['search'].get('overrides'))
        builder.search = {k: v for k, v in search._inputs(prune=True).items() if k not in ('potential', 'pressure')}
        builder.search_pressures = orm.List([float(p) for p in inputs['search']['pressures']])
        if inputs.get('holdout_densities'):
            builder.holdout_densities = orm.Dict(inputs['holdout_densities'])
        return builder

    def needs_holdout(self):
        return 'holdout_dataset' not in self.inputs

    def make_holdout(self):
        inputs = AttributeDict(self.exposed_inputs(ReferenceMeltWorkChain, namespace='holdout'))
        inputs.metadata = {'call_link_label': HOLDOUT_LINK}
        return ToContext(holdout=self.submit(ReferenceMeltWorkChain, **inputs))

    def inspect_holdout(self):
        node = self.ctx.holdout
        if not node.is_finished_ok:
            return self.exit_codes.ERROR_HOLDOUT.format(message=f'<{node.pk}> exit {node.exit_status}')
        self.ctx.holdout_dataset = node.outputs.dataset
        self.report(f'held-out set: {node.outputs.dataset.nframes} frames of the reference\'s own melt MD')
        return None

    def run_loops(self):
        holdout = self.ctx.get('holdout_dataset') or self.inputs.holdout_dataset
        self.ctx.holdout_dataset = holdout
        densities = self.inputs.holdout_densities.get_dict() if 'holdout_densities' in self.inputs else {}
        held_out = {}
        for label in LOOP_LINKS:
            held_out[label] = holdout
            if label in densities:
                # a loop's error, and so its trust levels, are measured where it explores, not at conditions it never sees
                if not frames_in_density_range(holdout.get_frames(), *densities[label]):
                    return self.exit_codes.ERROR_HOLDOUT_EMPTY.format(label=label, bounds=densities[label])
                held_out[label] = select_by_density(holdout, orm.List(densities[label]), metadata={
                    'call_link_label': LOOP_HOLDOUT_LINK.format(label=label.lower())})
                self.report(f'{label} held-out set: {held_out[label].nframes} of {holdout.nframes} frames, '
                            f'{densities[label][0]:g}-{densities[label][1]:g} g/cm^3')
        for label, link in LOOP_LINKS.items():
            inputs = AttributeDict(self.exposed_inputs(ActiveLoopWorkChain, namespace=label.lower()))
            inputs.train.holdout = held_out[label]
            inputs.metadata = {'call_link_label': link}
            node = self.submit(ActiveLoopWorkChain, **inputs)
            self.report(f'{label} active loop <{node.pk}> launched')
            self.to_context(**{link: node})

    def inspect_loops(self):
        for label, link in LOOP_LINKS.items():
            node = self.ctx[link]
            if not node.is_finished_ok:
                return self.exit_codes.ERROR_LOOP.format(label=label, message=f'<{node.pk}> exit {node.exit_status}')
            s = loop_summary(node).get_dict()
            self.report(f'{label}: {node.outputs.stop_reason.value}; crystal potential held-out errors: energy '
                        f'{1e3 * s.get("rmse_e_holdout_mean", float("nan")):.1f} meV/atom, force '
                        f'{s.get("rmse_f_holdout_mean", float("nan")):.3f} eV/Å')
        return None

    def run_crystals(self):
        potentials = {label: crystal_potential(self.ctx[link]) for label, link in LOOP_LINKS.items()}
        inputs = AttributeDict(self.exposed_inputs(EOSScanWorkChain, namespace='eos'))
        inputs.potentials = potentials
        inputs.metadata = {'call_link_label': EOS_LINK}
        self.to_context(eos=self.submit(EOSScanWorkChain, **inputs))
        for index, pressure in enumerate(self.inputs.search_pressures.get_list()):
            inputs = AttributeDict(self.exposed_inputs(EvoSearchWorkChain, namespace='search'))
            inputs.potential = potentials['HP']
            inputs.pressure = orm.Float(pressure)
            inputs.metadata = {'call_link_label': SEARCH_LINK.format(index=index)}
            self.to_context(**{f'search_{index}': self.submit(EvoSearchWorkChain, **inputs)})
        self.report(f'crystals: E(V) of {len(self.inputs.eos.structures)} polymorphs with LP and HP, searches at '
                    f'{", ".join(f"{p:g}" for p in self.inputs.search_pressures.get_list())} GPa with HP')

    def inspect_crystals(self):
        failed = [f'{name} <{self.ctx[name].pk}> exit {self.ctx[name].exit_status}'
                  for name in ['eos'] + [f'search_{i}' for i in range(len(self.inputs.search_pressures.get_list()))]
                  if not self.ctx[name].is_finished_ok]
        if failed:
            # the finished parts stay in the graph; the headlines are made from what is there
            self.report(f'crystal steps that failed: {", ".join(failed)}')
            self.ctx.crystal_failures = failed
        return None

    def results(self):
        nodes = {}
        eos = self.ctx.eos
        for label in LOOP_LINKS:
            if 'tables' in eos.outputs and label in eos.outputs.tables:
                nodes[f'eos_{label}'] = eos.outputs.tables[label]
        for index in range(len(self.inputs.search_pressures.get_list())):
            search = self.ctx[f'search_{index}']
            if 'ranking' in search.outputs:
                nodes[f'ranking_{index}'] = search.outputs.ranking
            if 'relabel_energies' in search.outputs:
                nodes[f'energies_{index}'] = search.outputs.relabel_energies
        window = self.inputs.search.relabel.window if 'window' in self.inputs.search.get('relabel', {}) else orm.Float(1.0)
        headlines = study_headlines(
            self.inputs.search_pressures, window, loop_summary(self.ctx[LOOP_LINKS['HP']]),
            loop_summary(self.ctx[LOOP_LINKS['LP']]), **nodes,
        )
        self.out('holdout', self.ctx.holdout_dataset)
        self.out('headlines', headlines)
        for key, row in headlines['targets'].items():
            verdict = {True: 'met', False: 'MISSED', None: 'not measured'}[row['met']]
            self.report(f'{key}: {row["value"]} (target {row["target"]}): {verdict}')
        if self.ctx.get('crystal_failures'):
            return self.exit_codes.ERROR_CRYSTALS.format(message=', '.join(self.ctx.crystal_failures))
        return None
