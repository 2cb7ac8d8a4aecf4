"""The demo study: liquid-only active learning of SiO2 (HP), validated on fresh liquid configurations."""

from __future__ import annotations

import time

from aiida import orm
from aiida.engine import run_get_node
from aiida.plugins import WorkflowFactory

from aiida_liqcryst.workflows.active_loop import INITIAL_LABELS_LINK
from aiida_liqcryst.workflows.label import LabelWorkChain


def load_codes(computer: str = 'localhost') -> dict:
    return {label: orm.load_code(f'{label}@{computer}') for label in ('dp', 'lmp', 'oracle')}


def format_table(rows: list[dict], trust_levels: bool = False) -> list[str]:
    """The per-iteration table as text lines: held-out columns when the loop had a held-out set, and with
    ``trust_levels`` the eps_lo/eps_hi each exploration used."""
    held = any('rmse_f_holdout' in row for row in rows)
    nan = float('nan')
    names, units = [f'{"E rmse":>7} {"F rmse":>7}'], [f'{"meV/at":>7} {"eV/Å":>7}']
    if held:
        names.append(f'{"E held":>7} {"F held":>7}')
        units.append(f'{"meV/at":>7} {"eV/Å":>7}')
    if trust_levels:
        names.append(f'{"eps_lo":>6} {"eps_hi":>6}')
        units.append(f'{"eV/Å":>6} {"eV/Å":>6}')
    lines = [f'{"iter":>4} {"frames":>6} {"labels":>6} ' + ' '.join(names) + '  accurate / candidate / failed per condition',
             f'{"":>4} {"":>6} {"":>6} ' + ' '.join(units)
             + '  (RMSEs: ensemble mean over all frames it trained on' + ('; held: on the held-out frames)' if held else ')')]
    for row in rows:
        conditions = '; '.join(
            f'{name}: {c["accurate_fraction"]:.2f}/{c["candidate_fraction"]:.2f}/{c["failed_fraction"]:.2f}'
            for name, c in (row.get('conditions') or {}).items()
        )
        columns = [f'{1e3 * row.get("rmse_e_dataset", nan):>7.1f} {row.get("rmse_f_dataset", nan):>7.3f}']
        if held:
            columns.append(f'{1e3 * row.get("rmse_e_holdout", nan):>7.1f} {row.get("rmse_f_holdout", nan):>7.3f}')
        if trust_levels:
            columns.append(f'{row.get("eps_lo", nan):>6.3f} {row.get("eps_hi", nan):>6.3f}')
        lines.append(f'{row["iteration"]:>4} {row.get("dataset_size", 0):>6} {row.get("labels_added", 0):>6} '
                     + ' '.join(columns) + f'  {conditions}')
    return lines


def validate(loop: orm.WorkflowNode, codes: dict, echo=print, frames: int = 12) -> orm.WorkflowNode:
    """Parity of the loop's first model against the oracle on fresh MD frames at the last stage's conditions."""
    from aiida_liqcryst.workflows.active_loop import conditions_for, equilibrated_starts

    ValidateWorkChain = WorkflowFactory('liqcryst.validate')
    potentials = dict(loop.outputs.potentials.items())
    stage = loop.inputs.schedule.get_list()[-1]
    builder = ValidateWorkChain.get_builder()
    builder.potentials = potentials
    builder.potential = potentials['model_0']
    builder.dp_code = codes['dp']
    builder.md.code = codes['lmp']
    initial_labels = loop.base.links.get_outgoing(link_label_filter=INITIAL_LABELS_LINK).one().node
    # where the loop's explorations started: the last reference MD frame of each random packing
    builder.md.structures = equilibrated_starts(initial_labels, dict(initial_labels.inputs.structures.items()))
    builder.md.conditions = orm.List(conditions_for(stage, seed=12345))  # other seeds than the loop's
    builder.md.max_candidates = orm.Int(frames)
    builder.label = LabelWorkChain.get_builder_from_protocol(
        codes['oracle'], None, 'oracle', potentials['model_0'].type_map)._inputs(prune=True)
    echo('validating the final model on fresh liquid frames')
    _, node = run_get_node(builder)
    return node


def crystals(loop: orm.WorkflowNode, codes: dict, echo=print, output: str = '.', polymorphs=None,
             protocol: str = 'demo') -> orm.WorkflowNode:
    """Fig. 2: E(V) of the polymorph library with the loop's first model (HP) against the oracle."""
    import pathlib

    from aiida_liqcryst.analysis.eos import format_comparison_table

    EOSScanWorkChain = WorkflowFactory('liqcryst.eos_scan')
    potential = loop.outputs.potentials['model_0']
    builder = EOSScanWorkChain.get_builder_from_protocol(codes['ase'], {'HP': potential}, reference='oracle',
                                                         reference_code=codes['oracle'],
                                                         polymorphs=polymorphs, protocol=protocol)
    echo(f'crystals: E(V) of {len(builder.structures)} polymorphs with the liquid-trained model vs the oracle')
    start = time.time()
    _, node = run_get_node(builder)
    echo(f'EOSScanWorkChain <{node.pk}> finished in {(time.time() - start) / 60:.1f} min, exit status {node.exit_status}')
    for label, table in node.outputs.tables.items() if 'tables' in node.outputs else []:
        for line in format_comparison_table(table.get_dict()):
            echo(line)
        if 'figures' in node.outputs and label in node.outputs.figures:
            path = pathlib.Path(output) / f'ev_grid_{label}.png'
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(node.outputs.figures[label].get_content(mode='rb'))
            echo(f'  E–V figure: {path.resolve()} (node <{node.outputs.figures[label].pk}>)')
    return node


def what_it_can_show(metrics: dict) -> list[str]:
    """In words: is the potential accurate enough on fresh liquid frames for its crystal steps to mean something?

    Judged against the liquid targets of the transfer study (:data:`aiida_liqcryst.analysis.study.TARGETS`).
    """
    from aiida_liqcryst.analysis.study import TARGETS

    energy, force = metrics['energy_rmse_mev_per_atom'], metrics['force_rmse']
    e_target, f_target = TARGETS['liquid_energy_rmse_mev_atom'][1], TARGETS['liquid_force_rmse_ev_a'][1]
    if energy <= e_target and force <= f_target:
        return [f'what this potential can show: its liquid errors ({energy:.1f} meV/atom, {force:.3f} eV/Å) meet the '
                f'targets ({e_target:g} meV/atom, {f_target:g} eV/Å): its crystal tests below are a test of transfer.']
    return [
        f'what this potential can show: its liquid errors ({energy:.1f} meV/atom, {force:.3f} eV/Å) are above what a '
        f'transfer test needs ({e_target:g} meV/atom, {f_target:g} eV/Å). Phase energies differ by tens of meV/atom, '
        'so its E(V) curves and searches below show how the workflows run, not whether a liquid-only potential '
        'transfers to crystals; `aiida-liqcryst study` runs the study that tests that (docs/results.md).'
    ]


def format_search(results: dict, top: int = 10) -> list[str]:
    """An EvoSearchWorkChain's outputs as text: stop reason and speed, the ranking, re-labeling metrics, best match."""
    lines = []
    summary = results['summary'].get_dict()
    lines.append(f"{len(summary['generations'])} generations ({summary['stop_reason']}), {summary['relaxations']} "
                 f"relaxations, {summary['relaxations_per_minute']} relaxations per minute of job time")
    ranking = results['ranking'].get_dict()
    lines.append(f"{'rank':>4s} {'key':10s} {'H (eV/atom)':>12s} {'natoms':>6s} {'space group (0.1 Å)':22s} {'CN(Si)':>6s}")
    for rank, key in enumerate(ranking['ranked'][:top]):
        row = ranking['structures'][key]
        cn = 'n/a' if row['si_coordination'] is None else f"{row['si_coordination']:.2f}"
        lines.append(f"{rank:4d} {key:10s} {row['enthalpy']:12.4f} {row['natoms']:6d} {str(row['space_group']):22s} {cn:>6s}")
    if 'relabel_metrics' in results and 'all' in results['relabel_metrics'].get_dict():
        m = results['relabel_metrics'].get_dict()
        window = m['window'] or {}
        lines.append(f"re-labeling ({m['all']['n']} structures): r = {m['all']['pearson_r']}, RMSE "
                     f"{1e3 * m['all']['rmse']:.1f} meV/atom; within {m['window_ev_per_atom']} eV/atom of the best: "
                     f"{1e3 * window.get('rmse', float('nan')):.1f} meV/atom ({m['n_window']}); offset "
                     f"{1e3 * m['mean_difference']:+.1f} meV/atom")
    if 'polymorph_comparison' in results:
        c = results['polymorph_comparison'].get_dict()
        lines.append(f"best structure: closest library polymorph {c['closest']} (RDF similarity {c['similarity']})")
    return lines


def write_search_files(results: dict, folder, stem: str, echo=print) -> None:
    """Write an EvoSearch's correlation plot (``<stem>_relabel.png``) and best structure (``<stem>_best.cif``)."""
    import pathlib

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if 'relabel_plot' in results:
        path = folder / f'{stem}_relabel.png'
        path.write_bytes(results['relabel_plot'].get_content(mode='rb'))
        echo(f'correlation plot: {path.resolve()} (node <{results["relabel_plot"].pk}>)')
    path = folder / f'{stem}_best.cif'
    results['best_structure'].get_pymatgen().to(filename=str(path))
    echo(f'best structure: {path.resolve()} (node <{results["best_structure"].pk}>)')


def search(loop: orm.WorkflowNode, codes: dict, echo=print, output: str = '.', pressures=(0.0, 10.0),
           protocol: str = 'demo') -> dict:
    """Fig. 3-4: evolutionary searches with the loop's first model (HP) at each pressure, re-labeled by the oracle."""
    EvoSearchWorkChain = WorkflowFactory('liqcryst.evo_search')
    potential = loop.outputs.potentials['model_0']
    nodes = {}
    for pressure in pressures:
        builder = EvoSearchWorkChain.get_builder_from_protocol(codes['ase'], potential, {'Si': 1, 'O': 2},
                                                               pressure=pressure, protocol=protocol,
                                                               reference='oracle', reference_code=codes['oracle'])
        echo(f'crystal search at {pressure:g} GPa with the liquid-trained model')
        start = time.time()
        results, node = run_get_node(builder)
        echo(f'EvoSearchWorkChain <{node.pk}> finished in {(time.time() - start) / 60:.1f} min, exit status {node.exit_status}')
        nodes[pressure] = node
        if 'summary' not in results:
            continue
        for line in format_search(results):
            echo('  ' + line)
        write_search_files(results, output, f'evo_search_{pressure:g}GPa', lambda line: echo('  ' + line))
    return nodes


def run_demo(protocol: str = 'demo', echo=print, with_crystals: bool = True, output: str = 'liqcryst-demo') -> orm.WorkflowNode:
    """Run the HP active loop with the oracle on the current profile, validate it, then (``with_crystals``)
    test the final model on the crystals (E(V) of the polymorph library, searches at 0 and 10 GPa); print
    where every result is."""
    ActiveLoopWorkChain = WorkflowFactory('liqcryst.active_loop')
    codes = load_codes()
    codes['engine'] = codes['oracle']
    codes['ase'] = orm.load_code('ase@localhost')
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
    validation = validate(node, codes, echo)
    if validation.is_finished_ok:
        m = validation.outputs.metrics.get_dict()
        echo(f'validation on {m["nframes"]} fresh liquid frames: energy RMSE {m["energy_rmse_mev_per_atom"]:.1f} meV/atom, '
             f'force RMSE {m["force_rmse"]:.3f} eV/Å (vs the oracle)')
        echo(f'  validation <{validation.pk}>: metrics <{validation.outputs.metrics.pk}>, parity plot '
             f'<{validation.outputs.parity_plot.pk}> (verdi node repo dump {validation.outputs.parity_plot.pk} ./parity)')
    echo(f'  full provenance: verdi process status {node.pk}; verdi node graph generate {node.pk}')
    if validation.is_finished_ok:
        for line in what_it_can_show(validation.outputs.metrics.get_dict()):
            echo(line)
    if with_crystals:
        crystals(node, codes, echo, output=output)
        search(node, codes, echo, output=output)
    echo(f'demo finished in {(time.time() - start) / 60:.1f} min')
    return node


def run_study(protocol: str = 'study', echo=print, output: str = 'liqcryst-study') -> orm.WorkflowNode:
    """Run the transfer study (``StudyWorkChain``) with the oracle on the current profile, then write its report,
    figures and headline JSON into ``output`` from the graph (``aiida-liqcryst report PK`` does the same later)."""
    from aiida_liqcryst.report import study_report

    StudyWorkChain = WorkflowFactory('liqcryst.study')
    codes = load_codes()
    codes['engine'] = codes['oracle']
    codes['ase'] = orm.load_code('ase@localhost')
    builder = StudyWorkChain.get_builder_from_protocol(codes, {'Si': 1, 'O': 2}, engine='oracle', protocol=protocol)
    echo(f'running the transfer study (protocol {protocol}): held-out melt, LP and HP loops, crystals, searches; '
         '`verdi process list` in another shell shows its steps')
    start = time.time()
    _, node = run_get_node(builder)
    echo(f'StudyWorkChain <{node.pk}> finished in {(time.time() - start) / 60:.1f} min, exit status {node.exit_status}')
    if not node.is_finished_ok:
        echo(f'`verdi process report {node.pk}` tells why it failed; what finished is in the graph')
    study_report(node, output=output, echo=echo)
    return node
