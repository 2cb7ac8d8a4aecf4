"""The oracle (SevenNet-0, ``liqcryst.oracle``) as a reference engine: many structures per job, jobs in parallel.

It can also run its own Langevin MD from each structure (``settings.md``) and label the frames: the held-out
melt and the initial labels of a loop are made that way.
"""

from __future__ import annotations

from aiida import orm
from aiida.plugins import CalculationFactory

from aiida_liqcryst.engines import oracle as oracle_engine
from aiida_liqcryst.reference import Job, Outcome, ReferenceEngine, failed_process

#: call link label of the i-th oracle job of a LabelWorkChain
BATCH_LINK = 'oracle_batch_{index}'
#: exit statuses of OracleCalculation whose output says, per structure, what was labeled and why the rest failed
#: (0 all labeled, 310 some failed, 311 all failed)
LABELED_STATUSES = (0, 310, 311)


class OracleEngine(ReferenceEngine):
    name = 'oracle'
    calc_plugin = 'liqcryst.oracle'
    runs_md = True
    batched = True
    ase_calculator = 'oracle'  # SevenNet-0 also runs inside the ASE tasks: the reference relaxes crystals itself
    parameter_keys = ()  # its options (relax_steps, fmax, md) are settings

    def check(self, parameters, settings, structures):
        if parameters:
            return '`parameters.oracle`: the oracle has no parameters; its options (relax_steps, fmax, md) go in `settings`'
        message = oracle_engine.validate_settings(settings)
        return f'`settings.oracle`: {message}' if message else None

    def jobs(self, structures, code, parameters, settings, options, batch_size, max_iterations):
        OracleCalculation = CalculationFactory(self.calc_plugin)
        keys = sorted(structures)
        jobs = []
        for index, start in enumerate(range(0, len(keys), batch_size)):
            batch = keys[start:start + batch_size]
            inputs = {
                'code': code,
                'structures': {key: structures[key] for key in batch},
                'metadata': {'options': dict(options)},
            }
            if settings:
                inputs['settings'] = orm.Dict(settings)
            jobs.append(Job(BATCH_LINK.format(index=index), OracleCalculation, inputs, batch))
        return jobs

    def collect(self, name, keys, node, structures):
        outcome = Outcome()
        if not (node.is_finished and node.exit_status in LABELED_STATUSES):
            outcome.failed = {key: failed_process(node) for key in keys}
            return outcome
        parameters = node.outputs.output_parameters.get_dict()
        outcome.seconds = float(parameters.get('seconds', 0.0))
        outcome.failed = dict(parameters.get('failed', {}))
        if parameters.get('n_labeled'):  # with none, the output namespaces are empty
            # the parser's outputs already are the label contract (and MD frames `<key>_f<i>` with their structures)
            for key, labels in node.outputs.labels.items():
                outcome.labels[key] = (node.outputs.structures[key], labels)
        return outcome
