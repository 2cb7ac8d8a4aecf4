"""The demo study: liquid-only active learning of SiO2 (HP), validated on fresh liquid configurations."""

from __future__ import annotations

import time

from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory


def load_codes(computer: str = 'localhost') -> dict:
    return {label: orm.load_code(f'{label}@{computer}') for label in ('dp', 'lmp', 'oracle')}


def format_table(rows: list[dict]) -> list[str]:
    """The per-iteration table as text lines."""
    lines = [f'{"iter":>4} {"frames":>6} {"labels":>6} {"F rmse":>7}  accurate / candidate / failed per condition']
    for row in rows:
        conditions = '; '.join(
            f'{name}: {c["accurate_fraction"]:.2f}/{c["candidate_fraction"]:.2f}/{c["failed_fraction"]:.2f}'
            for name, c in (row.get('conditions') or {}).items()
        )
        lines.append(
            f'{row["iteration"]:>4} {row.get("dataset_size", 0):>6} {row.get("labels_added", 0):>6} '
            f'{row.get("rmse_f_trn", float("nan")):>7.3f}  {conditions}'
        )
    return lines


def run_demo(protocol: str = 'demo', echo=print) -> orm.WorkflowNode:
    """Run the HP active loop with the oracle on the current profile, validate it, print where results are."""
    ActiveLoopWorkChain = WorkflowFactory('liqcryst.active_loop')
    codes = load_codes()
    codes['engine'] = codes['oracle']
    builder = ActiveLoopWorkChain.get_builder_from_protocol(codes, {'Si': 1, 'O': 2}, engine='oracle', protocol=protocol)
    start = time.time()
    echo('running the active loop (HP, oracle engine); `verdi process list` in another shell shows its steps')
    _, node = run_get_node(builder)
    echo(f'active loop <{node.pk}> finished in {(time.time() - start) / 60:.1f} min, exit status {node.exit_status}')
    if not node.is_finished_ok:
        echo(f'it failed: `verdi process report {node.pk}` tells why')
        return node
    echo(f'stop reason: {node.outputs.stop_reason.value}')
    for line in format_table(node.outputs.iterations.get_list()):
        echo(line)
    echo('where the results are (load with aiida.orm.load_node(PK)):')
    echo(f'  final dataset        <{node.outputs.dataset.pk}>  ({node.outputs.dataset.nframes} frames)')
    for key, potential in node.outputs.potentials.items():
        echo(f'  potential {key:<10} <{potential.pk}>  {potential.filename}')
    echo(f'  per-iteration table  <{node.outputs.iterations.pk}>')
    echo(f'  full provenance: verdi process status {node.pk}; verdi node graph generate {node.pk}')
    return node
