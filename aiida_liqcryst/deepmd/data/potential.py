"""``DeepPotentialData``: a frozen DeePMD-kit model (TensorFlow ``.pb`` or PyTorch ``.pth``) with its metadata."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import tempfile
import typing as t

from aiida import orm

from ..backends import BACKENDS, Backend, backend_of_file


class DeepPotentialData(orm.SinglefileData):
    """A frozen DeePMD model file: ``.pb`` (TensorFlow) or ``.pth`` (PyTorch); deepmd picks the backend by suffix.

    Attributes read from the model itself: ``type_map``, ``rcut`` and, when the model's definition script has
    it, ``descriptor_type``; plus ``backend`` (``tf`` | ``pt``), ``model_size`` (bytes), ``deepmd_version`` and
    ``compressed``.
    """

    def __init__(
        self,
        file: str | pathlib.Path | t.IO,
        filename: str | None = None,
        *,
        compressed: bool = False,
        descriptor_type: str | None = None,
        **kwargs,
    ):
        """:param file: path or binary stream of a frozen model (``.pb`` or ``.pth``).
        :param filename: name in the repository (its suffix says the backend; default: the file's name).
        :param compressed: whether the model was made by ``dp compress``.
        :param descriptor_type: used when the model does not tell its descriptor type itself.
        """
        if filename is None:
            name = getattr(file, 'name', None) if not isinstance(file, (str, pathlib.Path)) else file
            if not name:
                raise ValueError('give `filename` (model.pb or model.pth) for a stream without a name')
            filename = pathlib.Path(name).name
        backend_of_file(filename)  # raises, naming the suffixes deepmd accepts
        super().__init__(file, filename=filename, **kwargs)
        self._read_metadata(compressed, descriptor_type)

    def _read_metadata(self, compressed: bool, descriptor_type: str | None) -> None:
        import deepmd

        with self.as_model_path() as path:
            from deepmd.infer import DeepPot

            pot = DeepPot(str(path))
            type_map = list(pot.get_type_map())
            rcut = float(pot.get_rcut())
            with contextlib.suppress(Exception):  # the definition script is not reachable for every backend
                descriptor_type = pot.deep_eval.get_model_def_script()['descriptor']['type']
            size = os.path.getsize(path)
        self.base.attributes.set('backend', backend_of_file(self.filename).name)
        self.base.attributes.set('type_map', type_map)
        self.base.attributes.set('rcut', rcut)
        self.base.attributes.set('descriptor_type', descriptor_type)
        self.base.attributes.set('model_size', int(size))
        self.base.attributes.set('deepmd_version', str(deepmd.__version__))
        self.base.attributes.set('compressed', bool(compressed))

    @property
    def type_map(self) -> list[str]:
        return self.base.attributes.get('type_map')

    @property
    def rcut(self) -> float:
        return self.base.attributes.get('rcut')

    @property
    def descriptor_type(self) -> str | None:
        return self.base.attributes.get('descriptor_type')

    # not `backend`: Node.backend is the storage backend of the node
    @property
    def deepmd_backend(self) -> Backend:
        """deepmd-kit's backend of the model (``.name`` ``tf`` or ``pt``, ``.flag``, ``.suffix``), by its suffix."""
        return BACKENDS[self.base.attributes.get('backend', None) or backend_of_file(self.filename).name]

    @property
    def compressed(self) -> bool:
        return self.base.attributes.get('compressed')

    @contextlib.contextmanager
    def as_model_path(self) -> t.Iterator[pathlib.Path]:
        """A temporary copy of the model on disk, with its own name and suffix (removed on exit)."""
        with tempfile.TemporaryDirectory() as tmp:
            yield pathlib.Path(self.export(tmp))

    def export(self, folder) -> str:
        """Write the model into ``folder`` (created if needed) under its own name; return the absolute path."""
        folder = pathlib.Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.filename
        with self.open(mode='rb') as source, target.open('wb') as handle:
            shutil.copyfileobj(source, handle)
        return str(target)

    def get_deep_pot(self):
        """A ``deepmd.infer.DeepPot`` of this model (loaded into memory; no file is kept)."""
        from deepmd.infer import DeepPot

        with self.as_model_path() as path:
            return DeepPot(str(path))

    def get_calculator(self, **kwargs):
        """An ASE calculator (``deepmd.calculator.DP``) of this model; ``kwargs`` go to ``DP``."""
        from deepmd.calculator import DP

        with self.as_model_path() as path:
            return DP(model=str(path), **kwargs)
