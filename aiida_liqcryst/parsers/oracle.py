"""Parser of OracleCalculation: one StructureData + ArrayData label per labeled frame; failures are reported."""

from __future__ import annotations

import json
import tempfile

import numpy as np
from aiida import orm

from aiida_liqcryst.engines import oracle
from aiida_liqcryst.parsers import RetrievedFilesParser


def label_node(label: dict) -> orm.ArrayData:
    """The DEVELOPERS.md label: ArrayData with energy (1,) eV, forces (N, 3) eV/Å, virial (3, 3) eV."""
    node = orm.ArrayData()
    node.set_array('energy', np.array([float(label['energy'])]))
    node.set_array('forces', label['forces'].reshape(-1, 3))
    node.set_array('virial', label['virial'].reshape(3, 3))
    return node


def _short(failed: dict, limit: int = 300) -> str:
    text = '; '.join(f'{key}: {reason}' for key, reason in failed.items())
    return text if len(text) <= limit else text[:limit] + '...'


class OracleParser(RetrievedFilesParser):
    """Attach the labeled frames, then say with the exit code whether any structure failed."""

    def parse(self, **kwargs):
        results_text = self._read(oracle.RESULTS_FILE)
        if results_text is None:
            stderr = (self._read('oracle.err') or '').strip().splitlines()
            detail = ' | '.join(stderr[-3:]) if stderr else 'stderr is empty (killed?)'
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(filename=oracle.RESULTS_FILE, detail=detail)
        labels_text = self._read(oracle.LABELS_FILE)
        if labels_text is None:
            return self.exit_codes.ERROR_MISSING_OUTPUT.format(filename=oracle.LABELS_FILE, detail='')
        try:
            results = json.loads(results_text)
            frames = self._read_frames(labels_text)
        except Exception as exc:  # noqa: BLE001 -- any unreadable output is the same failure for the user
            return self.exit_codes.ERROR_READING_OUTPUT.format(filename='the oracle output', exception=exc)

        inputs = self.node.inputs.structures
        failed = dict(results.get('failed', {}))
        labeled_sources = {source for _, source, _, _ in frames}
        for key in inputs:  # a structure with neither frames nor a recorded failure is still never dropped silently
            if key not in labeled_sources and key not in failed:
                failed[key] = 'no labeled frame returned'

        for key, source, atoms, label in frames:
            structure = orm.StructureData(ase=atoms)
            structure.pbc = inputs[source].pbc
            self.out(f'structures.{key}', structure)
            self.out(f'labels.{key}', label_node(label))

        results['failed'] = failed
        results['n_failed'] = len(failed)
        results['n_labeled'] = len(frames)
        self.out('output_parameters', orm.Dict(results))

        if not frames:
            return self.exit_codes.ERROR_ALL_STRUCTURES_FAILED.format(failed=_short(failed))
        if failed:
            return self.exit_codes.ERROR_SOME_STRUCTURES_FAILED.format(count=len(failed), failed=_short(failed))
        return None

    @staticmethod
    def _read_frames(text: str):
        with tempfile.NamedTemporaryFile('w', suffix='.extxyz') as handle:
            handle.write(text)
            handle.flush()
            return oracle.read_labels(handle.name) if text.strip() else []
