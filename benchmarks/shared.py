"""Pieces several benchmark scripts use (imported after `sys.path.insert(0, <this folder>)`: `verdi run` does not
put the script's folder on the path)."""

from __future__ import annotations

import subprocess
import time

from aiida import orm
from aiida.plugins import WorkflowFactory


def run_with_code(code: orm.AbstractCode, arguments: str, cwd, log: str = 'run.log') -> float:
    """Seconds of ``<code's executable> <arguments>`` in ``cwd`` with the code's prepend text (its environment)."""
    command = f'{code.prepend_text}\n{code.get_executable()} {arguments} > {log} 2>&1'
    start = time.time()
    subprocess.run(['bash', '-c', command], cwd=cwd, check=True)
    return time.time() - start


def validation_dataset(loop: orm.WorkflowNode) -> orm.Data | None:
    """The labeled frames of the newest finished ValidateWorkChain of the loop's final model_0, or None."""
    query = orm.QueryBuilder().append(orm.Data, filters={'id': loop.outputs.potentials['model_0'].pk}, tag='potential')
    query.append(WorkflowFactory('liqcryst.validate'), with_incoming='potential', project='*')
    validations = sorted((node for (node,) in query.all() if node.is_finished_ok), key=lambda node: node.pk)
    return validations[-1].outputs.dataset if validations else None
