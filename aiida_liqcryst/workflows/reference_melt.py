"""ReferenceMeltWorkChain: held-out liquid frames from the reference engine's own MD, made once per study.

A number that judges a model must come from data that model did not choose: frames of MD run by the
reference itself (not by the models being judged), at densities and temperatures that span what the loop
explores, from packings that no loop starts from.
"""

from __future__ import annotations

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import WorkChain, if_
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.calcfunctions import random_melt
from aiida_liqcryst.deepmd.calcfunctions import merge_datasets
from aiida_liqcryst.protocols import ProtocolMixin
from aiida_liqcryst.reference import MD_SETTING, engine_names, get_engine

LabelWorkChain = WorkflowFactory('liqcryst.label')
PremeltWorkChain = WorkflowFactory('liqcryst.premelt')

MD_LINK = 'md_t{index}'
PREMELT_LINK = 'premelt_t{index}'


def positive_values_error(value, name: str, unit: str, upper: float) -> str | None:
    try:
        values = [float(v) for v in value.get_list()]
    except (TypeError, ValueError):
        return f'`{name}` must be a list of numbers ({unit}), got {value.get_list()}'
    if not values or any(not 0 < v <= upper for v in values):
        return f'`{name}` must be a non-empty list of values in (0, {upper:g}] {unit}, got {values}'
    return None


def validate_inputs(inputs, _):
    if (error := positive_values_error(inputs['densities'], 'densities', 'g/cm^3', 20)) is not None:
        return error
    if (error := positive_values_error(inputs['temperatures'], 'temperatures', 'K', 20000)) is not None:
        return error
    label = inputs.get('label', {})
    engine = label['engine'].value if 'engine' in label else None
    if engine is None or engine not in engine_names():
        return None  # reported by the label namespace
    if not get_engine(engine).runs_md:
        md_engines = [name for name in engine_names() if get_engine(name).runs_md]
        return (f'`label.engine` {engine!r} cannot run MD here: held-out melt frames need the reference\'s own MD; '
                f'engines that can: {md_engines}')
    settings = label['settings'].get_dict() if 'settings' in label else {}
    if MD_SETTING not in settings.get(engine, {}):
        return (f'`label.settings` needs `{engine}.{MD_SETTING}` (steps, timestep, every; the temperature is set per run '
                'from `temperatures`): without MD the frames would be relaxed packings, not a melt')
    return None


class ReferenceMeltWorkChain(ProtocolMixin, WorkChain):
    """Melt frames labeled by the reference engine's own MD: one packing per density, one MD per temperature.

    Every (density, temperature) pair gets its own random packing (seeds from ``seed`` on), with ``premelt`` first
    melted by a classical potential in LAMMPS at that temperature, then relaxed and melted by the reference (``label.settings.<engine>.md``, its ``temperature`` set from ``temperatures``). The frames of all
    runs form ``dataset``: a held-out set for ``TrainEnsembleWorkChain.holdout`` / ``ActiveLoopWorkChain``.
    """

    _protocol_file = 'reference_melt'

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.input('composition', valid_type=orm.Dict, help='Atoms per formula unit, e.g. {"Si": 1, "O": 2}.')
        spec.input('formula_units', valid_type=orm.Int, help='Formula units per cell.')
        spec.input('densities', valid_type=orm.List, help='Packing densities, g/cm^3 (the melt\'s density at the '
                   'pressures the loop explores).')
        spec.input('temperatures', valid_type=orm.List, help='MD temperatures, K.')
        spec.input('min_distance', valid_type=orm.Float, default=lambda: orm.Float(1.5), help='Minimum distance in the packings, Å.')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(100000),
                   help='Seed of the first packing (then +1 per run) and of the MD velocities; keep it away from the '
                        'seeds of the loops this set judges.')
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures',),
                           namespace_options={'help': 'The reference engine and its MD settings.'})
        spec.expose_inputs(PremeltWorkChain, namespace='premelt', exclude=('structures',), namespace_options={
            'required': False, 'populate_defaults': False,
            'help': 'Melt the packings with a classical potential first (its temperature: each MD\'s own).'})
        spec.inputs.validator = validate_inputs
        spec.outline(cls.make_packings, if_(cls.should_premelt)(cls.run_premelt, cls.inspect_premelt), cls.run_md,
                     cls.collect)
        spec.output('dataset', valid_type=orm.Data, help='Every labeled MD frame of every run (LabeledDatasetData).')
        spec.exit_code(401, 'ERROR_LABEL', message='the reference MD failed at {failed}')
        spec.exit_code(402, 'ERROR_PREMELT', message='the classical pre-melt failed at {failed}')

    @classmethod
    def get_builder_from_protocol(cls, code, composition: dict, engine: str = 'oracle', protocol=None,
                                  overrides: dict | None = None, lammps_code=None):
        """A builder from a named protocol; ``code`` is the reference engine's code.

        :param lammps_code: a LAMMPS code: with it, and ``premelt`` in the protocol, the packings are melted by a
            classical potential before the reference's MD.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.composition = orm.Dict(composition)
        builder.formula_units = orm.Int(inputs['formula_units'])
        builder.densities = orm.List([float(d) for d in inputs['densities']])
        builder.temperatures = orm.List([float(t) for t in inputs['temperatures']])
        builder.min_distance = orm.Float(inputs['min_distance'])
        builder.seed = orm.Int(inputs['seed'])
        label = {'batch_size': inputs['batch_size']}
        if engine in inputs.get('settings', {}):
            label['settings'] = {engine: inputs['settings'][engine]}
        builder.label = LabelWorkChain.get_builder_from_protocol(
            code, None, engine, sorted(composition), protocol=inputs.get('label_protocol'), overrides=label,
        )._inputs(prune=True)
        if inputs.get('premelt'):
            if lammps_code is None:
                raise ValueError(f'protocol {protocol!r} pre-melts the packings in LAMMPS: give `lammps_code`')
            builder.premelt.code = lammps_code
            builder.premelt.potential = orm.Str(inputs['premelt']['potential'])
            builder.premelt.parameters = orm.Dict(inputs['premelt']['parameters'])
        return builder

    def make_packings(self):
        densities = [float(d) for d in self.inputs.densities.get_list()]
        seed = self.inputs.seed.value
        self.ctx.packings = [
            {f'd{d_index}': random_melt(self.inputs.composition, self.inputs.formula_units, orm.Float(density),
                                        self.inputs.min_distance, orm.Int(seed + t_index * len(densities) + d_index))
             for d_index, density in enumerate(densities)}
            for t_index in range(len(self.inputs.temperatures.get_list()))
        ]

    def should_premelt(self):
        return 'code' in self.inputs.get('premelt', {})

    def run_premelt(self):
        temperatures = [float(t) for t in self.inputs.temperatures.get_list()]
        for t_index, temperature in enumerate(temperatures):
            inputs = AttributeDict(self.exposed_inputs(PremeltWorkChain, namespace='premelt'))
            inputs.parameters = orm.Dict({**inputs.parameters.get_dict(), 'temperature': temperature,
                                          'seed': self.inputs.seed.value + t_index})
            inputs.structures = self.ctx.packings[t_index]
            inputs.metadata = {'call_link_label': PREMELT_LINK.format(index=t_index)}
            self.to_context(**{PREMELT_LINK.format(index=t_index): self.submit(PremeltWorkChain, **inputs)})

    def inspect_premelt(self):
        failed = []
        for t_index in range(len(self.ctx.packings)):
            node = self.ctx[PREMELT_LINK.format(index=t_index)]
            if not node.is_finished_ok:
                failed.append(f'{PREMELT_LINK.format(index=t_index)} <{node.pk}> exit {node.exit_status}')
                continue
            self.ctx.packings[t_index] = dict(node.outputs.structures)
        if failed:
            return self.exit_codes.ERROR_PREMELT.format(failed=', '.join(failed))
        return None

    def run_md(self):
        densities = [float(d) for d in self.inputs.densities.get_list()]
        temperatures = [float(t) for t in self.inputs.temperatures.get_list()]
        engine = self.inputs.label.engine.value
        settings = self.inputs.label.settings.get_dict()
        seed = self.inputs.seed.value
        for t_index, temperature in enumerate(temperatures):
            structures = self.ctx.packings[t_index]
            inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
            md = {**settings[engine][MD_SETTING], 'temperature': temperature, 'seed': seed + t_index}
            inputs.settings = orm.Dict({**settings, engine: {**settings[engine], MD_SETTING: md}})
            inputs.structures = structures
            inputs.metadata = {'call_link_label': MD_LINK.format(index=t_index)}
            self.to_context(**{MD_LINK.format(index=t_index): self.submit(LabelWorkChain, **inputs)})
        melted = 'pre-melted ' if self.should_premelt() else ''
        self.report(f'reference MD of {len(densities)} {melted}packings ({", ".join(f"{d:g}" for d in densities)} g/cm^3) at '
                    f'{", ".join(f"{t:g}" for t in temperatures)} K')

    def collect(self):
        datasets, failed = {}, []
        for t_index in range(len(self.inputs.temperatures.get_list())):
            node = self.ctx[MD_LINK.format(index=t_index)]
            if not node.is_finished_ok or 'dataset' not in node.outputs:
                failed.append(f'{MD_LINK.format(index=t_index)} <{node.pk}> exit {node.exit_status}')
                continue
            datasets[f't{t_index}'] = node.outputs.dataset
        if failed:
            return self.exit_codes.ERROR_LABEL.format(failed=', '.join(failed))
        dataset = merge_datasets(**datasets)
        self.out('dataset', dataset)
        self.report(f'{dataset.nframes} held-out frames of the reference melt')
        return None
