"""deepmd-kit's backends as this plugin uses them: the ``dp`` flag, the frozen model's suffix, the checkpoint files.

One place for what differs between TensorFlow and PyTorch; everything else (``input.json``, the learning curve,
``dp test``'s summary, NaN detection, LAMMPS' ``pair_style deepmd``) is the same for both.

On this machine's kind of CPU (2 cores, one thread per job) TensorFlow is the fast path: measured 2026-12-04
(quiet machine, demo network, 24 atoms) training 0.0093 vs 0.0407 s per batch and a 4-model LAMMPS exploration 4.0x
faster, 6.6x with compressed TensorFlow models (benchmarks/README.md, "Backends"). On GPUs users may prefer PyTorch: the backend is an input of every training.
"""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass(frozen=True)
class Backend:
    """What a deepmd-kit backend names differently.

    :param name: the key users give (``tf`` | ``pt``).
    :param flag: ``dp``'s backend option.
    :param suffix: of a frozen model (deepmd picks the backend from it when it loads a model).
    :param checkpoint: the checkpoint name deepmd points at the newest one (``dp train --restart <it>``).
    :param checkpoint_glob: files of the checkpoints in a training folder (what a restart copies).
    :param checkpoint_marker: how one file of each checkpoint ends (tells the backend of a folder of checkpoints).
    :param finished: a line of ``dp train``'s log written only after a successful end.
    """

    name: str
    title: str
    flag: str
    suffix: str
    checkpoint: str
    checkpoint_glob: str
    checkpoint_marker: str
    finished: str

    @property
    def model(self) -> str:
        """The frozen model's file name."""
        return f'model{self.suffix}'

    @property
    def compressed_model(self) -> str:
        return f'model_compressed{self.suffix}'

    def relink_newest_checkpoint(self) -> str:
        """Shell lines run before a restart: point ``model.ckpt.*`` at the newest complete checkpoint.

        TensorFlow writes ``model.ckpt-<step>.{index,data-*}``, then the ``checkpoint`` file, then ``.meta`` (which
        deepmd's restart reads), and only then links ``model.ckpt.*`` to them: a job killed in between leaves the
        links missing or one save behind. (PyTorch writes one file and moves its link at once: nothing to do.)
        """
        if self.name != 'tf':
            return ''
        return (
            f'newest=$(ls {self.checkpoint}-*.meta 2>/dev/null | sed \'s/\\.meta$//\' | sort -t- -k2 -n | tail -n 1)\n'
            'if [ -n "$newest" ] && [ -e "$newest.index" ]; then\n'
            f'  for file in "$newest".*; do ln -sf "$file" "{self.checkpoint}.${{file#"$newest".}}"; done\n'
            'fi'
        )

    def checkpoint_files(self, names: list[str], checkpoint: str) -> list[str]:
        """The files of checkpoint ``checkpoint`` among ``names`` (TensorFlow: one prefix, several files)."""
        if self.name == 'pt':
            return [checkpoint] if checkpoint in names else []
        return sorted(name for name in names if name.startswith(f'{checkpoint}.'))


BACKENDS = {
    'tf': Backend(
        name='tf', title='TensorFlow', flag='--tf', suffix='.pb', checkpoint='model.ckpt',
        checkpoint_glob='model.ckpt*', checkpoint_marker='.index', finished='finished training',
    ),
    'pt': Backend(
        name='pt', title='PyTorch', flag='--pt', suffix='.pth', checkpoint='model.ckpt.pt',
        checkpoint_glob='model.ckpt*.pt', checkpoint_marker='.pt', finished='Trained model has been saved to',
    ),
}
DEFAULT_BACKEND = 'tf'  # the faster one on CPUs (see the module docstring)


def backend_error(name) -> str | None:
    """Why ``name`` is not a backend, or None."""
    if name not in BACKENDS:
        return f'unknown deepmd-kit backend {name!r}: choose one of {sorted(BACKENDS)} (tf = TensorFlow, pt = PyTorch)'
    return None


def get_backend(name: str) -> Backend:
    if (error := backend_error(name)) is not None:
        raise ValueError(error)
    return BACKENDS[name]


def backend_of_file(filename: str | pathlib.Path) -> Backend:
    """The backend of a frozen model file, by its suffix (as deepmd-kit decides)."""
    suffix = pathlib.Path(str(filename)).suffix
    for backend in BACKENDS.values():
        if backend.suffix == suffix:
            return backend
    suffixes = ' or '.join(f'*{b.suffix} ({b.title})' for b in BACKENDS.values())
    raise ValueError(f'a frozen DeePMD model must be named {suffixes}: deepmd-kit picks the backend by the suffix; '
                     f'got {filename}')


def backend_of_checkpoints(names) -> str | None:
    """The backend whose checkpoints are among the file ``names`` of a training folder, or None."""
    for backend in BACKENDS.values():
        if any(n.startswith('model.ckpt') and n.endswith(backend.checkpoint_marker) for n in names):
            return backend.name
    return None
