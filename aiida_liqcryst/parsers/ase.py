"""AseParser: the ``outputs/`` folder of ``aiida-liqcryst-ase`` into nodes."""

from __future__ import annotations

import io
import json

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from aiida_liqcryst.engines import ase_tasks
from aiida_liqcryst.validators import json_safe


def trajectory_node(data) -> orm.TrajectoryData:
    """A ``TrajectoryData`` of the arrays of an ``md`` trajectory file (velocities in Å/fs, times in fs)."""
    from ase.data import chemical_symbols

    trajectory = orm.TrajectoryData()
    symbols = [chemical_symbols[int(z)] for z in data['numbers']]
    trajectory.set_trajectory(
        symbols, data['positions'], stepids=data['steps'].astype(int), cells=data['cells'], times=data['times'],
        velocities=data['velocities'],
    )
    for key in ('potential_energy', 'kinetic_energy', 'temperature', 'masses'):
        trajectory.set_array(key, data[key])
    return trajectory


class AseParser(Parser):
    """Attach final structures, result arrays, md trajectories and the summary; exit codes for failed structures."""

    def parse(self, **kwargs):
        import ase.io

        retrieved = self.retrieved
        summary_path = f'{ase_tasks.OUTPUT_DIR}/{ase_tasks.SUMMARY_FILE}'
        try:
            summary = json.loads(retrieved.get_object_content(summary_path))
        except FileNotFoundError:
            return self.exit_codes.ERROR_OUTPUT_MISSING
        except (OSError, ValueError) as exc:
            return self.exit_codes.ERROR_OUTPUT_UNREADABLE.format(error=exc)
        files = set(retrieved.base.repository.list_object_names(ase_tasks.OUTPUT_DIR))

        for name, entry in summary.get('structures', {}).items():
            if entry.get('status') != 'ok':
                continue
            results = f'{name}.results.npz'
            if results in files:
                with retrieved.base.repository.open(f'{ase_tasks.OUTPUT_DIR}/{results}', 'rb') as handle:
                    data = np.load(io.BytesIO(handle.read()))
                    arrays = orm.ArrayData()
                    for key in data.files:
                        arrays.set_array(key, data[key])
                self.out(f'results.{name}', arrays)
            final = f'{name}.final.extxyz'
            if final in files:
                text = retrieved.get_object_content(f'{ase_tasks.OUTPUT_DIR}/{final}')
                atoms = ase.io.read(io.StringIO(text), format='extxyz')
                self.out(f'structures.{name}', orm.StructureData(ase=atoms))
            trajectory = f'{name}.trajectory.npz'
            if trajectory in files:
                with retrieved.base.repository.open(f'{ase_tasks.OUTPUT_DIR}/{trajectory}', 'rb') as handle:
                    data = np.load(io.BytesIO(handle.read()))
                    self.out(f'trajectory.{name}', trajectory_node(data))

        self.out('output_parameters', orm.Dict(json_safe(summary)))
        if summary.get('error'):
            return self.exit_codes.ERROR_TOOL_FAILED.format(error=summary['error'])
        entries = summary.get('structures', {})
        pending = sorted(k for k, v in entries.items() if v.get('status') not in ('ok', 'failed'))
        if pending or not summary.get('finished'):
            return self.exit_codes.ERROR_INCOMPLETE.format(names=', '.join(pending) or '?')
        failed = {k: v.get('error') for k, v in entries.items() if v.get('status') == 'failed'}
        if failed:
            text = '; '.join(f'{k}: {e}' for k, e in failed.items())
            if len(failed) == len(entries):
                return self.exit_codes.ERROR_ALL_STRUCTURES_FAILED.format(failed=text)
            return self.exit_codes.ERROR_SOME_STRUCTURES_FAILED.format(failed=text)
        return None
