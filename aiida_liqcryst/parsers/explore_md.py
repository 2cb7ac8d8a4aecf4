"""Parser of ExploreMDCalculation: frames, model deviation, thermo; a blown-up MD keeps its truncated outputs."""

from __future__ import annotations

import numpy as np
from aiida import orm

from aiida_liqcryst.calculations.explore_md import STDOUT_FILENAME, ensemble_type_map
from aiida_liqcryst.exploration import lammps_input, lammps_output, model_deviation
from aiida_liqcryst.exploration.lammps_input import Condition
from aiida_liqcryst.parsers import RetrievedFilesParser


class ExploreMDParser(RetrievedFilesParser):
    """Attach whatever the MD produced, then return the exit code that says how it ended."""

    def parse(self, **kwargs):
        condition = Condition.from_dict(self.node.inputs.parameters.get_dict())
        elements = ensemble_type_map(self.node.inputs.potentials)
        stdout = self._read(STDOUT_FILENAME) or ''
        log = self._read(lammps_input.LOG_FILENAME)
        if log is None:
            tail = ' | '.join(stdout.strip().splitlines()[-3:])
            return self.exit_codes.ERROR_MISSING_LOG.format(detail=f'stdout ends: {tail}' if tail else 'no stdout')

        errors = list(dict.fromkeys(lammps_output.lammps_errors(log) + lammps_output.lammps_errors(stdout)))
        thermo = lammps_output.thermo_in_gpa(lammps_output.read_thermo(log))
        frames = lammps_output.read_dump(self._read(lammps_input.DUMP_FILENAME) or '', elements)
        devi_text = self._read(lammps_input.DEVI_FILENAME) or ''
        devi = model_deviation.read_model_devi(devi_text)

        # keep the frames that have a deviation row (deepmd may write one more row than frames after a blow-up)
        devi_steps = set(int(s) for s in devi['step'])
        frames = [f for f in frames if f['step'] in devi_steps]
        steps = [f['step'] for f in frames]

        if frames:
            trajectory = orm.TrajectoryData()
            trajectory.set_trajectory(
                symbols=frames[0]['symbols'],
                positions=np.array([f['positions'] for f in frames]),
                stepids=np.array(steps, dtype=int),
                cells=np.array([f['cell'] for f in frames]),
                times=np.array(steps, dtype=float) * condition.timestep,
                pbc=[True, True, True],
            )
            self.out('trajectory', trajectory)
            aligned = model_deviation.select_steps(devi, steps)
            deviation = orm.ArrayData()
            for name in model_deviation.COLUMNS:
                deviation.set_array(name, np.asarray(aligned[name]))
            self.out('model_deviation', deviation)
        if thermo and len(thermo['step']):
            table = orm.ArrayData()
            for name, values in thermo.items():
                table.set_array(name, np.asarray(values))
            self.out('thermo', table)

        completed = lammps_output.finished(log) and not errors
        last_step = int(steps[-1]) if steps else None
        summary = {
            'completed': completed,
            'errors': errors,
            'frames': len(frames),
            'last_step': last_step,
            'requested_steps': condition.steps,
            'timestep': condition.timestep,
            'simulated_time': (last_step or 0) * condition.timestep,
            'condition': condition.to_dict(),
            'elements': elements,
            'number_of_models': len(self.node.inputs.potentials),
        }
        if frames:
            summary['max_devi_f_max'] = float(np.nanmax(aligned['max_devi_f']))
        for name in ('temp', 'press', 'vol', 'density'):
            if thermo and len(thermo.get(name, [])):
                summary[f'{name}_mean'] = float(np.mean(thermo[name]))
        self.out('output_parameters', orm.Dict(summary))

        unstable = [e for e in errors if lammps_output.is_unstable(e)]
        if unstable:
            return self.exit_codes.ERROR_MD_UNSTABLE.format(step=last_step, error=unstable[0])
        if errors:
            return self.exit_codes.ERROR_LAMMPS.format(error=errors[0])
        if not lammps_output.finished(log):
            return self.exit_codes.ERROR_INCOMPLETE.format(step=last_step)
        if not frames:
            return self.exit_codes.ERROR_NO_FRAMES
        return None
