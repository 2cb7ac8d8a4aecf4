"""Storage of a finished ActiveLoop: nodes and bytes per labeled frame and per iteration.

    verdi -p liqcryst run benchmarks/storage.py <ActiveLoop PK> [--json out.json]

Exports the loop with everything AiiDA's archive traversal rules pull in (its inputs, calculations, models,
datasets, retrieved files) to a temporary archive: the archive's node count and size are what a user stores
and shares per study. Also the profile repository's size on disk (all studies in the profile).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile

from aiida import orm
from aiida.manage import get_manager
from aiida.tools.archive import create_archive


def folder_size(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file() and not p.is_symlink())


def storage(loop: orm.WorkflowNode) -> dict:
    rows = loop.outputs.iterations.get_list()
    labeled = loop.outputs.dataset.nframes
    with tempfile.TemporaryDirectory() as tmp:
        filename = pathlib.Path(tmp) / 'loop.aiida'
        create_archive([loop], filename=filename)
        archive_bytes = filename.stat().st_size
        from aiida.tools.archive.abstract import get_format

        with get_format().open(filename, 'r') as archive:
            nodes = archive.querybuilder().append(orm.Node).count()
    profile = get_manager().get_profile()
    repository = profile.storage_config.get('filepath') or profile.storage_config.get('repository_uri', '')
    repository = pathlib.Path(str(repository).replace('file://', ''))
    return {
        'loop': loop.pk, 'iterations': len(rows), 'labeled_frames': labeled, 'archive_nodes': nodes,
        'archive_mb': round(archive_bytes / 2**20, 2),
        'nodes_per_frame': round(nodes / labeled, 1), 'kb_per_frame': round(archive_bytes / 1024 / labeled, 1),
        'nodes_per_iteration': round(nodes / len(rows), 1), 'mb_per_iteration': round(archive_bytes / 2**20 / len(rows), 2),
        'profile_storage_mb': round(folder_size(repository) / 2**20, 1) if repository.exists() else None,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('loop', help='PK or UUID of a finished ActiveLoopWorkChain')
    parser.add_argument('--json', default=None)
    args = parser.parse_args()
    result = storage(orm.load_node(args.loop))
    print(f"ActiveLoop<{result['loop']}>: {result['iterations']} iterations, {result['labeled_frames']} labeled frames; "
          f"archive {result['archive_nodes']} nodes, {result['archive_mb']} MB: {result['nodes_per_frame']} nodes and "
          f"{result['kb_per_frame']} kB per labeled frame, {result['nodes_per_iteration']} nodes and "
          f"{result['mb_per_iteration']} MB per iteration; profile storage on disk {result['profile_storage_mb']} MB")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == '__main__':  # `verdi run` runs the file as __main__
    main()
