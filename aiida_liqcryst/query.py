"""Query helpers: the results of a study as plain rows, found in the provenance graph with ``QueryBuilder``.

Every helper takes nodes as a node, a pk or a UUID, and returns plain Python (lists and dicts of numbers, strings
and node identifiers), ready for JSON or ``pandas.DataFrame``. ``identifier='pk'`` (default) gives nodes as pks,
``identifier='uuid'`` as UUIDs: UUIDs stay the same when a study is exported and imported into another profile
(``verdi archive create`` / ``verdi archive import``), pks do not.

- :func:`labeled_frames`: every frame an ActiveLoopWorkChain labeled, with the condition, MD frame and model
  deviation it was picked at, the MD and models that proposed it and the calculation that labeled it.
- :func:`potential_lineage`: for a DeepPotentialData, its training, dataset, loop iteration and every labeled frame
  upstream (with the MD runs and models that proposed each).
- :func:`eos_results`: the EOSScanWorkChain tables of a potential.
- :func:`iteration_table`: the ``iterations`` output of an ActiveLoopWorkChain as rows.
"""

from __future__ import annotations

import re

from aiida import orm
from aiida.common.links import LinkType

from aiida_liqcryst.workflows.active_loop import INITIAL_LABELS_LINK
from aiida_liqcryst.workflows.active_loop import LABEL_LINK as LOOP_LABEL_LINK
from aiida_liqcryst.workflows.active_loop import TRAIN_LINK as LOOP_TRAIN_LINK

ACTIVE_LOOP = 'aiida.workflows:liqcryst.active_loop'
LABEL = 'aiida.workflows:liqcryst.label'
EOS_SCAN = 'aiida.workflows:liqcryst.eos_scan'
LABEL_LINK = re.compile('^' + LOOP_LABEL_LINK.format(iteration=r'(?P<iteration>\d+)') + '$')
TRAIN_LINK = re.compile('^' + LOOP_TRAIN_LINK.format(iteration=r'(?P<iteration>\d+)') + '$')
#: extras ``select_candidates`` sets on every candidate, copied into the rows of :func:`labeled_frames` as
#: (row column, extra): the extra ``structure`` (key of the MD's starting structure) is the column ``packing``
CANDIDATE_EXTRAS = (
    ('condition', 'condition'), ('condition_index', 'condition_index'), ('packing', 'structure'), ('run', 'run'),
    ('frame_index', 'frame_index'), ('step', 'step'), ('max_devi_f', 'max_devi_f'),
)

__all__ = ('eos_results', 'iteration_table', 'labeled_frames', 'potential_lineage')


# -- small helpers ---------------------------------------------------------------------------------------------------


def _load(node) -> orm.Node:
    """A node from a node, a pk or a UUID."""
    return node if isinstance(node, orm.Node) else orm.load_node(node)


def _check_identifier(identifier: str) -> str:
    if identifier not in ('pk', 'uuid'):
        raise ValueError(f"identifier must be 'pk' or 'uuid', got {identifier!r}")
    return identifier


def _load_process(node, process_type: str, what: str) -> orm.ProcessNode:
    node = _load(node)
    if not isinstance(node, orm.ProcessNode) or node.process_type != process_type:
        raise TypeError(f'expected {what} node, got {node.__class__.__name__}<{node.pk}> ({getattr(node, "process_type", None)})')
    return node


def _called(parent_pk: int, process_type: str | None = None) -> list[tuple[int, str]]:
    """``(pk, call link label)`` of the processes ``parent_pk`` called (optionally only those of one type), by pk."""
    qb = orm.QueryBuilder()
    qb.append(orm.WorkflowNode, filters={'id': parent_pk}, tag='parent')
    edge_filters = {'type': {'in': [LinkType.CALL_WORK.value, LinkType.CALL_CALC.value]}}
    qb.append(orm.ProcessNode, with_incoming='parent', edge_filters=edge_filters, edge_project='label', project='id',
              filters={'process_type': process_type} if process_type else {}, tag='child', edge_tag='link')
    return sorted((row['child']['id'], row['link']['label']) for row in qb.iterdict())


def _callers(pk: int) -> list[dict]:
    """The chain of callers of process ``pk``, innermost first: ``{pk, uuid, process_type, link}`` (``link``: the
    call link label from that caller to the process below it)."""
    chain = []
    while True:
        qb = orm.QueryBuilder()
        qb.append(orm.ProcessNode, filters={'id': pk}, tag='called')
        qb.append(orm.WorkflowNode, with_outgoing='called', project=['id', 'uuid', 'process_type'], edge_project='label',
                  edge_filters={'type': {'in': [LinkType.CALL_WORK.value, LinkType.CALL_CALC.value]}},
                  tag='caller', edge_tag='link')
        rows = list(qb.iterdict())
        if not rows:
            return chain
        caller = rows[0]['caller']
        pk = caller['id']
        chain.append({'pk': pk, 'uuid': caller['uuid'], 'process_type': caller['process_type'], 'link': rows[0]['link']['label']})


# -- labeled frames --------------------------------------------------------------------------------------------------


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', key)]


def _builds_of(labelings: dict[int, int | None]) -> dict[int, tuple]:
    """The ``build_dataset`` calcfunctions the LabelWorkChains ``labelings`` (pk -> iteration) called:
    ``{build pk: (iteration, labeling pk)}``."""
    if not labelings:
        return {}
    qb = orm.QueryBuilder()
    qb.append(orm.WorkChainNode, filters={'id': {'in': list(labelings)}}, project='id', tag='labeling')
    qb.append(orm.CalcFunctionNode, with_incoming='labeling', filters={'attributes.function_name': 'build_dataset'},
              edge_filters={'type': LinkType.CALL_CALC.value}, project='id')
    return {build: (labelings[labeling], labeling) for labeling, build in qb.all()}


def _labelings_of(builds: list[int]) -> dict[int, tuple]:
    """For ``build_dataset`` pks: ``{build pk: (iteration, labeling pk)}``; the LabelWorkChain that called it (None
    for a build outside one) and the ActiveLoop iteration whose ``label_<i>`` it was (None otherwise)."""
    result = {build: (None, None) for build in builds}
    if not builds:
        return result
    qb = orm.QueryBuilder()
    qb.append(orm.CalcFunctionNode, filters={'id': {'in': builds}}, project='id', tag='build')
    qb.append(orm.WorkChainNode, with_outgoing='build', edge_filters={'type': LinkType.CALL_CALC.value},
              filters={'process_type': LABEL}, project='id', tag='labeling')
    labelings = dict(qb.all())
    iterations = {}
    if labelings:
        qb = orm.QueryBuilder()
        qb.append(orm.WorkChainNode, filters={'id': {'in': list(labelings.values())}}, project='id', tag='labeling')
        qb.append(orm.WorkChainNode, with_outgoing='labeling', edge_filters={'type': LinkType.CALL_WORK.value},
                  filters={'process_type': ACTIVE_LOOP}, edge_project='label', tag='loop', edge_tag='link')
        for row in qb.iterdict():
            if (match := LABEL_LINK.match(row['link']['label'])) is not None:
                iterations[row['labeling']['id']] = int(match['iteration'])
    for build, labeling in labelings.items():
        result[build] = (iterations.get(labeling), labeling)
    return result


def _frame_rows(builds: dict[int, tuple], identifier: str) -> list[dict]:
    """One row per frame of the ``build_dataset`` calcfunctions ``builds`` (pk -> (iteration, LabelWorkChain pk)).

    A frame is a ``structure_<key>`` / ``labels_<key>`` input pair of a ``build_dataset``.
    """
    if not builds:
        return []
    pick = (lambda pk, uuid: pk) if identifier == 'pk' else (lambda pk, uuid: uuid)

    # 1. the structure / labels pairs that went into the datasets
    qb = orm.QueryBuilder()
    qb.append(orm.CalcFunctionNode, filters={'id': {'in': list(builds)}}, project='id', tag='build')
    qb.append(orm.Data, with_outgoing='build', edge_filters={'type': LinkType.INPUT_CALC.value},
              edge_project='label', project=['id', 'uuid'], tag='input', edge_tag='link')
    frames: dict[tuple[int, str], dict] = {}
    for row in qb.iterdict():
        build, pk, uuid, label = row['build']['id'], row['input']['id'], row['input']['uuid'], row['link']['label']
        kind, _, key = label.partition('_')
        if kind in ('structure', 'labels') and key:
            frames.setdefault((build, key), {})[kind] = (pk, uuid)
    frames = {k: v for k, v in frames.items() if len(v) == 2}

    # 2. the job that made each label: its creator or, for a calcfunction that parsed a job's output
    #    (cp2k_labels, vasp_labels), the job that created that output
    creators: dict[int, tuple] = {}
    if frames:
        qb = orm.QueryBuilder()
        qb.append(orm.Data, filters={'id': {'in': [f['labels'][0] for f in frames.values()]}}, project='id', tag='labels')
        qb.append(orm.ProcessNode, with_outgoing='labels', edge_filters={'type': LinkType.CREATE.value},
                  project=['id', 'uuid', 'node_type'])
        creators = {labels: (pk, uuid, node_type) for labels, pk, uuid, node_type in qb.iterall()}
        functions = [pk for pk, _, node_type in creators.values() if 'CalcFunctionNode' in node_type]
        if functions:
            qb = orm.QueryBuilder()
            qb.append(orm.CalcFunctionNode, filters={'id': {'in': functions}}, project='id', tag='function')
            qb.append(orm.Data, with_outgoing='function', tag='parsed')
            qb.append(orm.CalcJobNode, with_outgoing='parsed', edge_filters={'type': LinkType.CREATE.value},
                      project=['id', 'uuid'])
            jobs = {function: (pk, uuid) for function, pk, uuid in qb.iterall()}
            creators = {labels: (*jobs.get(pk, (pk, uuid)), node_type) for labels, (pk, uuid, node_type) in creators.items()}

    # 3. the structures each LabelWorkChain was given (`structures.<key>`) and, for candidates, their select_candidates
    labelings = {labeling for _, labeling in builds.values() if labeling is not None}
    given: dict[int, dict[str, dict]] = {}
    names: dict[int, tuple] = {}
    if labelings:
        qb = orm.QueryBuilder()
        qb.append(orm.WorkChainNode, filters={'id': {'in': list(labelings)}}, project=['id', 'uuid'], tag='labeling')
        qb.append(orm.StructureData, with_outgoing='labeling', edge_filters={'label': {'like': 'structures__%'}},
                  edge_project='label', project=['id', 'uuid', 'extras'], tag='given', edge_tag='link')
        for row in qb.iterdict():
            labeling, labeling_uuid = row['labeling']['id'], row['labeling']['uuid']
            pk, uuid, extras = row['given']['id'], row['given']['uuid'], row['given']['extras']
            names[labeling] = (labeling, labeling_uuid)
            given.setdefault(labeling, {})[row['link']['label'].removeprefix('structures__')] = {
                'node': (pk, uuid), 'extras': extras or {}, 'select': None,
            }
        # candidates: the structures select_candidates created
        nodes = {g['node'][0]: g for per in given.values() for g in per.values()}
        if nodes:
            qb = orm.QueryBuilder()
            qb.append(orm.StructureData, filters={'id': {'in': list(nodes)}}, project='id', tag='given')
            qb.append(orm.CalcFunctionNode, with_outgoing='given', edge_filters={'type': LinkType.CREATE.value},
                      filters={'attributes.function_name': 'select_candidates'}, project='id', tag='select')
            for pk, select in qb.all():
                nodes[pk]['select'] = select

    # 4. for the candidates: the MD (creator of the `trajectory_<run>` input of select_candidates) and its models
    selects = {g['select'] for per in given.values() for g in per.values() if g['select'] is not None}
    md_runs: dict[tuple[int, str], tuple] = {}
    models: dict[int, set] = {}
    if selects:
        qb = orm.QueryBuilder()
        qb.append(orm.CalcFunctionNode, filters={'id': {'in': list(selects)}}, project='id', tag='select')
        qb.append(orm.Data, with_outgoing='select', edge_filters={'label': {'like': 'trajectory_%'}}, edge_project='label',
                  tag='trajectory', edge_tag='link')
        qb.append(orm.CalcJobNode, with_outgoing='trajectory', edge_filters={'type': LinkType.CREATE.value},
                  project=['id', 'uuid'], tag='md')
        qb.append(orm.Data, with_outgoing='md', edge_filters={'label': {'like': 'potentials__%'}}, project=['id', 'uuid'],
                  tag='model')
        for row in qb.iterdict():
            select, label = row['select']['id'], row['link']['label']
            md, md_uuid, model, model_uuid = row['md']['id'], row['md']['uuid'], row['model']['id'], row['model']['uuid']
            md_runs[(select, label.removeprefix('trajectory_'))] = (md, md_uuid)
            models.setdefault(md, set()).add(pick(model, model_uuid))

    rows = []
    for (build, key), pair in frames.items():
        iteration, labeling = builds[build]
        inputs = given.get(labeling, {})
        source = inputs.get(key) or inputs.get(re.sub(r'_f\d+$', '', key))  # oracle MD frames are `<key>_f<i>`
        candidate = source if source is not None and source['select'] is not None else None
        md = md_runs.get((candidate['select'], str(candidate['extras'].get('run')))) if candidate else None
        creator = creators.get(pair['labels'][0])
        row = {
            'iteration': iteration,
            'key': key,
            'candidate': pick(*candidate['node']) if candidate else None,
            'structure': pick(*pair['structure']),
            'labels': pick(*pair['labels']),
            'calculation': pick(*creator[:2]) if creator else None,
            'labeling': pick(*names[labeling]) if labeling in names else None,
            'md': pick(*md) if md else None,
            'models': sorted(models.get(md[0], ())) if md else [],
        }
        row.update({column: candidate['extras'].get(extra) if candidate else None for column, extra in CANDIDATE_EXTRAS})
        rows.append(row)
    rows.sort(key=lambda r: (-1 if r['iteration'] is None else r['iteration'], str(r['labeling']), _natural(r['key'])))
    return rows


def labeled_frames(loop, iteration: int | None = None, include_initial: bool = False, identifier: str = 'pk') -> list[dict]:
    """Every frame the ActiveLoopWorkChain ``loop`` labeled, one dict per frame.

    :param loop: the ActiveLoopWorkChain (node, pk or UUID).
    :param iteration: only the frames labeled in this iteration (0-based); default: every iteration.
    :param include_initial: also the frames of the initial labeling of the random packings (``iteration`` None);
        ignored when ``iteration`` is given.
    :param identifier: ``'pk'`` or ``'uuid'``: how the rows name nodes.
    :returns: a list of dicts sorted by iteration and frame key, with

        - ``iteration``: the loop iteration whose ``label_<i>`` labeled the frame (None: the initial labels);
        - ``key``: the frame's key in the LabelWorkChain (``candidate_<i>``; ``<key>_f<i>`` for oracle MD frames);
        - where the frame was picked (None for initial frames), from the candidate's extras: ``condition`` (dict:
          temperature K, pressure GPa, ensemble, steps, ...), ``condition_index``, ``packing`` (key of the MD's
          starting packing, e.g. ``melt_0``), ``run`` (MD run of the exploration), ``frame_index`` (frame of the MD trajectory),
          ``step`` (MD step), ``max_devi_f`` (the force model deviation, eV/Å, it was picked at);
        - nodes: ``candidate`` (the StructureData output by ``select_candidates``; None for initial frames),
          ``structure`` (the geometry in the dataset: for the oracle its own copy of the candidate), ``labels``
          (the ArrayData energy/forces/virial), ``calculation`` (the job that labeled it: OracleCalculation,
          Cp2kCalculation, VaspCalculation), ``labeling`` (the LabelWorkChain), ``md`` (the ExploreMDCalculation
          whose trajectory held the frame) and ``models`` (the DeepPotentialData that drove that MD, sorted).
    """
    _check_identifier(identifier)
    node = _load_process(loop, ACTIVE_LOOP, 'an ActiveLoopWorkChain')
    labelings = {}
    for pk, link in _called(node.pk, LABEL):
        if (match := LABEL_LINK.match(link)) is not None:
            if iteration is None or int(match['iteration']) == iteration:
                labelings[pk] = int(match['iteration'])
        elif link == INITIAL_LABELS_LINK and include_initial and iteration is None:
            labelings[pk] = None
    return _frame_rows(_builds_of(labelings), identifier)


# -- lineage of a potential ------------------------------------------------------------------------------------------


def _dataset_leaves(dataset_pks: list[int]) -> tuple[list[int], list[int]]:
    """Walk ``merge_datasets`` back from the datasets: the ``build_dataset`` calcfunctions whose frames they hold,
    and the datasets made otherwise (e.g. given as ``initial_dataset``)."""
    builds, others, seen = set(), set(), set()
    frontier = set(dataset_pks)
    while frontier:
        seen |= frontier
        qb = orm.QueryBuilder()
        qb.append(orm.Data, filters={'id': {'in': list(frontier)}}, project='id', tag='dataset')
        qb.append(orm.CalcFunctionNode, with_outgoing='dataset', edge_filters={'type': LinkType.CREATE.value},
                  project=['id', 'attributes.function_name'], tag='creator')
        merges, made = [], set()
        for dataset, creator, function in qb.all():  # projections in the order of the vertices
            if function == 'build_dataset':
                builds.add(creator)
                made.add(dataset)
            elif function == 'merge_datasets':
                merges.append(creator)
                made.add(dataset)
        others |= frontier - made
        frontier = set()
        if merges:
            qb = orm.QueryBuilder()
            qb.append(orm.CalcFunctionNode, filters={'id': {'in': merges}}, tag='merge')
            qb.append(orm.Data, with_outgoing='merge', edge_filters={'type': LinkType.INPUT_CALC.value}, project='id')
            frontier = {pk for (pk,) in qb.all()} - seen
    return sorted(builds), sorted(others)


def potential_lineage(potential, identifier: str = 'pk') -> dict:
    """Where a DeepPotentialData comes from: its training, the data it was trained on, and what proposed those data.

    :param potential: a DeepPotentialData (node, pk or UUID), e.g. ``loop.outputs.potentials.model_0``.
    :param identifier: ``'pk'`` or ``'uuid'``: how the result names nodes.
    :returns: a dict with

        - ``potential``; ``training``: the DeepmdTrainCalculation that made it; ``init_model``: the training whose
          weights it started from (``dp train --init-model``, the loop's ``reuse_models``), else None;
        - ``datasets``: ``{name: dataset}`` it was trained on; ``nframes``: their total number of frames;
        - ``loop`` and ``iteration``: the ActiveLoopWorkChain whose ``train_<i>`` trained it and ``i`` (both None
          outside a loop); ``model``: its key in the ensemble (``model_<j>``), else None;
        - ``frames``: every labeled frame of those datasets, rows as :func:`labeled_frames` gives them (the initial
          labels included, with ``iteration`` None), found by walking ``merge_datasets`` back to each
          ``build_dataset``; ``external_datasets``: datasets on that walk made otherwise (their frames unknown);
        - ``labelings``, ``md``, ``models``: the LabelWorkChains, ExploreMDCalculations and DeepPotentialData
          upstream of those frames (``models``: the models that proposed them), each sorted.
    """
    _check_identifier(identifier)
    node = _load(potential)
    pick = (lambda pk, uuid: pk) if identifier == 'pk' else (lambda pk, uuid: uuid)
    qb = orm.QueryBuilder()
    qb.append(orm.Data, filters={'id': node.pk}, tag='potential')
    qb.append(orm.CalcJobNode, with_outgoing='potential', edge_filters={'type': LinkType.CREATE.value},
              project=['id', 'uuid'])
    creator = qb.first()
    if creator is None:
        raise ValueError(f'{node.__class__.__name__}<{node.pk}> was not made by a training calculation')
    training = creator[0]

    qb = orm.QueryBuilder()
    qb.append(orm.CalcJobNode, filters={'id': training}, tag='training')
    qb.append(orm.Data, with_outgoing='training', edge_filters={'label': {'like': 'datasets__%'}}, edge_project='label',
              project=['id', 'uuid', 'attributes.nframes'], tag='dataset', edge_tag='link')
    datasets = {
        row['link']['label'].removeprefix('datasets__'):
            (row['dataset']['id'], row['dataset']['uuid'], row['dataset']['attributes.nframes'])
        for row in qb.iterdict()
    }

    qb = orm.QueryBuilder()
    qb.append(orm.CalcJobNode, filters={'id': training}, tag='training')
    qb.append(orm.Data, with_outgoing='training', edge_filters={'label': 'restart_from'}, tag='folder')
    qb.append(orm.CalcJobNode, with_outgoing='folder', edge_filters={'type': LinkType.CREATE.value}, project=['id', 'uuid'])
    init_model = qb.first()

    loop = iteration = model = None
    for caller in _callers(training):
        if caller['process_type'] == 'aiida.workflows:liqcryst.train_ensemble':
            model = caller['link']
        if caller['process_type'] == ACTIVE_LOOP:
            if (match := TRAIN_LINK.match(caller['link'])) is not None:
                loop, iteration = pick(caller['pk'], caller['uuid']), int(match['iteration'])
            break

    builds, external = _dataset_leaves([pk for pk, _, _ in datasets.values()])
    frames = _frame_rows(_labelings_of(builds), identifier)
    external_names = []
    if external:
        qb = orm.QueryBuilder().append(orm.Data, filters={'id': {'in': external}}, project=['id', 'uuid'])
        external_names = sorted(pick(pk, uuid) for pk, uuid in qb.all())
    return {
        'potential': pick(node.pk, node.uuid),
        'training': pick(*creator),
        'init_model': pick(*init_model) if init_model else None,
        'datasets': {name: pick(pk, uuid) for name, (pk, uuid, _) in sorted(datasets.items())},
        'nframes': sum(n or 0 for _, _, n in datasets.values()),
        'loop': loop,
        'iteration': iteration,
        'model': model,
        'frames': frames,
        'external_datasets': external_names,
        'labelings': sorted({f['labeling'] for f in frames if f['labeling'] is not None}),
        'md': sorted({f['md'] for f in frames if f['md'] is not None}),
        'models': sorted({m for f in frames for m in f['models']}),
    }


# -- EOS results -----------------------------------------------------------------------------------------------------


def eos_results(potential, identifier: str = 'pk') -> list[dict]:
    """Every EOSScanWorkChain table of a DeepPotentialData, oldest first.

    :param potential: a DeepPotentialData (node, pk or UUID).
    :param identifier: ``'pk'`` or ``'uuid'``: how the rows name nodes.
    :returns: one dict per (scan, label under which the potential was given; the same potential may be given twice):
        ``workchain`` (the EOSScanWorkChain), ``exit_status`` (None while it runs; 0 ok, 403: some phases failed),
        ``label`` (the key in its ``potentials`` input), ``table``, ``curves``, ``figure`` (output nodes, None when
        absent), ``reference`` and ``energy_zero`` (of the table) and ``phases``: ``{phase: row}`` of the table
        (V0, E0, B0, B0' of both methods, ΔV0 %, ΔB0 %, relative energies, curve RMSEs; units in
        ``EOSScanWorkChain`` docs and the table's ``units``). Scans without a table for the potential (failed
        before tabulating) have ``table`` None and ``phases`` {}.
    """
    _check_identifier(identifier)
    node = _load(potential)
    pick = (lambda pk, uuid: pk) if identifier == 'pk' else (lambda pk, uuid: uuid)
    qb = orm.QueryBuilder()
    qb.append(orm.Data, filters={'id': node.pk}, tag='potential')
    qb.append(orm.WorkChainNode, with_incoming='potential', filters={'process_type': EOS_SCAN},
              edge_filters={'label': {'like': 'potentials__%'}}, edge_project='label',
              project=['id', 'uuid', 'attributes.exit_status', 'ctime'], tag='scan', edge_tag='link')
    rows = []
    for row in sorted(qb.iterdict(), key=lambda r: (r['scan']['ctime'], r['scan']['id'])):
        pk, uuid, exit_status = row['scan']['id'], row['scan']['uuid'], row['scan']['attributes.exit_status']
        label = row['link']['label'].removeprefix('potentials__')
        outputs = orm.QueryBuilder()
        outputs.append(orm.WorkChainNode, filters={'id': pk}, tag='scan')
        outputs.append(orm.Data, with_incoming='scan', edge_project='label', project=['id', 'uuid', 'attributes'],
                       edge_filters={'type': LinkType.RETURN.value,
                                     'label': {'in': [f'{kind}__{label}' for kind in ('tables', 'curves', 'figures')]}},
                       tag='output', edge_tag='link')
        found = {
            out['link']['label'].partition('__')[0]: (out['output']['id'], out['output']['uuid'], out['output']['attributes'])
            for out in outputs.iterdict()
        }
        table = found.get('tables', (None, None, {}))[2]
        rows.append({
            'workchain': pick(pk, uuid),
            'exit_status': exit_status,
            'label': label,
            'table': pick(*found['tables'][:2]) if 'tables' in found else None,
            'curves': pick(*found['curves'][:2]) if 'curves' in found else None,
            'figure': pick(*found['figures'][:2]) if 'figures' in found else None,
            'reference': table.get('reference'),
            'energy_zero': table.get('energy_zero'),
            'phases': table.get('phases', {}),
        })
    return rows


# -- iteration table -------------------------------------------------------------------------------------------------


def iteration_table(loop, per_condition: bool = False) -> list[dict]:
    """The ``iterations`` output of an ActiveLoopWorkChain as rows (one per iteration, or per iteration and condition).

    :param loop: the ActiveLoopWorkChain (node, pk or UUID); it must have finished with outputs.
    :param per_condition: one row per (iteration, condition) instead of one per iteration.
    :returns: per iteration: ``iteration``, ``dataset_size`` (frames trained on), ``labels_added``, ensemble mean
        RMSEs ``rmse_e_trn``, ``rmse_f_trn``, ``rmse_e_val``, ``rmse_f_val`` (eV/atom, eV/Å; those dp reported),
        ``min_accurate_fraction`` (over the conditions; None without any) and ``conditions``
        (``{condition_<j>: exploration statistics}``). With ``per_condition``: the same without ``conditions`` plus
        the condition's columns: ``condition_index``, ``temperature`` (K), ``pressure`` (GPa), ``ensemble``,
        ``frames``, ``accurate``/``candidate``/``failed`` counts and ``*_fraction``s, ``max_devi_f_p10/p50/p90``
        (eV/Å), ``runs``, ``truncated_runs``, ``selected``.
    """
    node = _load_process(loop, ACTIVE_LOOP, 'an ActiveLoopWorkChain')
    qb = orm.QueryBuilder()
    qb.append(orm.WorkChainNode, filters={'id': node.pk}, tag='loop')
    qb.append(orm.List, with_incoming='loop', edge_filters={'type': LinkType.RETURN.value, 'label': 'iterations'},
              project='attributes.list')
    found = qb.first()
    if found is None:
        raise ValueError(f'ActiveLoopWorkChain<{node.pk}> has no `iterations` output (state {node.process_state})')
    rows = []
    for stored in found[0]:
        conditions = stored.get('conditions', {})
        accurate = [c['accurate_fraction'] for c in conditions.values() if c.get('accurate_fraction') is not None]
        row = {**stored, 'min_accurate_fraction': min(accurate) if accurate else None}
        row.setdefault('conditions', {})
        if not per_condition:
            rows.append(row)
            continue
        base = {k: v for k, v in row.items() if k != 'conditions'}
        for name in sorted(conditions, key=_natural):
            stats = dict(conditions[name])
            condition = stats.pop('condition', {})
            rows.append({
                **base, 'condition_index': int(name.rpartition('_')[2]),
                'temperature': condition.get('temperature'), 'pressure': condition.get('pressure'),
                'ensemble': condition.get('ensemble'), **stats,
            })
    return rows
