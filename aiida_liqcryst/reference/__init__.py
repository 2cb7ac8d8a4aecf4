"""Reference engines as adapters: one module per engine behind one small interface, found by entry point.

An engine (a :class:`ReferenceEngine`) turns a batch of structures into the processes that label them
(:meth:`ReferenceEngine.jobs`) and a finished process into labels or recorded failures
(:meth:`ReferenceEngine.collect`). ``LabelWorkChain`` only runs what an engine hands it, so a new engine is one
module plus an entry point in the group ``liqcryst.reference`` and, optionally, a section in ``label.yaml``:
see docs/engines.md.

The label contract (DEVELOPERS.md): one labeled structure is a ``StructureData`` and an ``ArrayData`` with
``energy`` (1,) eV, ``forces`` (N, 3) eV/Å and ``virial`` (3, 3) eV, virial = -stress x volume.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib.metadata import entry_points

import numpy as np
from aiida import orm

#: entry-point group of the reference engines (name -> ReferenceEngine subclass)
ENTRY_POINT_GROUP = 'liqcryst.reference'
#: the settings key of an engine that runs the reference's own MD (``runs_md``) and labels its frames
MD_SETTING = 'md'


@dataclasses.dataclass
class Job:
    """One process that labels ``keys``: ``LabelWorkChain`` submits ``process`` with ``inputs`` under ``name``."""

    name: str  # call link label and context key
    process: type
    inputs: dict
    keys: list


@dataclasses.dataclass
class Outcome:
    """What one finished job gave: ``labels`` (frame key -> (StructureData, label ArrayData)), ``failed``
    (input key -> reason) and the engine's own ``seconds``."""

    labels: dict = dataclasses.field(default_factory=dict)
    failed: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0


class ReferenceEngine:
    """Interface of a reference engine. Subclasses set the class attributes and implement ``jobs`` and ``collect``.

    ``parameters`` and ``settings`` are the engine's own sections of ``LabelWorkChain``'s inputs (plain dicts,
    already merged with the protocol by the builder); ``options`` are the jobs' ``metadata.options``.
    """

    #: name of the engine (its entry point and its section in ``parameters``/``settings``/``label.yaml``)
    name: str = ''
    #: the CalcJob entry point that the engine's code must run
    calc_plugin: str = ''
    #: whether the engine runs the reference's own MD (``settings[MD_SETTING]``) and labels its frames
    runs_md: bool = False
    #: whether one job labels ``batch_size`` structures (else one job per structure)
    batched: bool = False
    #: the calculator of the ``liqcryst.ase`` tasks that computes the same method (the reference's own relaxations,
    #: E(V) scans and MD of crystals), or None: then crystal workflows use this engine's energies at the potential's
    #: geometries only
    ase_calculator: str | None = None
    #: allowed top-level keys of ``parameters`` (``None``: not checked here)
    parameter_keys: tuple | None = ()
    #: allowed top-level keys of ``settings`` (``None``: not checked here)
    setting_keys: tuple | None = None

    def check(self, parameters: dict, settings: dict, structures: dict) -> str | None:
        """An error message for inputs this engine cannot run, or None. Called before anything is submitted."""
        for name, given, allowed in (('parameters', parameters, self.parameter_keys),
                                     ('settings', settings, self.setting_keys)):
            if allowed is None:
                continue
            unknown = sorted(set(given) - set(allowed))
            if unknown:
                return (f'`{name}.{self.name}`: unknown keys {unknown}; allowed: {sorted(allowed)}' if allowed else
                        f'`{name}.{self.name}`: the {self.name} engine takes no {name}, got {unknown}')
        return None

    def jobs(self, structures: dict, code, parameters: dict, settings: dict, options: dict, batch_size: int,
             max_iterations: int) -> list[Job]:
        """The processes that label ``structures`` (key -> StructureData)."""
        raise NotImplementedError

    def collect(self, name: str, keys: list, node, structures: dict) -> Outcome:
        """Labels (made by calcfunctions, so they have a creator) or failures of the finished ``node``, the job
        ``name`` that labels ``keys`` of ``structures``. Only what is stored counts: jobs are not kept across steps."""
        raise NotImplementedError


@functools.lru_cache(maxsize=None)
def _entry_points() -> dict:
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP)}


def engine_names() -> list[str]:
    """Names of the registered reference engines."""
    _entry_points.cache_clear()  # an engine installed (or put on sys.path) since the last call is seen
    return sorted(_entry_points())


def get_engine(name: str) -> ReferenceEngine:
    """The engine registered under ``name``.

    :raises ValueError: for an unknown name, listing the registered ones.
    """
    points = _entry_points()
    if name not in points:
        names = engine_names()
        points = _entry_points()
        if name not in points:
            raise ValueError(f'unknown engine {name!r}; choose one of {names}')
    engine = points[name].load()()
    if not isinstance(engine, ReferenceEngine):
        raise TypeError(f'entry point {name!r} of {ENTRY_POINT_GROUP} is not a ReferenceEngine')
    return engine


def default_code(engine: str, code):
    """The code of ``engine`` on the computer of ``code``, as ``aiida-liqcryst setup`` registers it
    (``<engine>@<computer>``): the default reference code of the crystal workflows' builders.

    :raises ValueError: when there is none, saying how to give one.
    """
    from aiida.common.exceptions import NotExistent

    label = f'{engine}@{code.computer.label}'
    try:
        return orm.load_code(label)
    except NotExistent as exc:
        raise ValueError(f'no code `{label}` for the reference engine: pass `reference_code`, or register it with '
                         '`aiida-liqcryst setup`') from exc


def label_arrays(energy, forces, virial) -> dict:
    """The label contract's arrays as floats of the right shapes."""
    return {
        'energy': np.array([float(np.asarray(energy).reshape(-1)[0])]),
        'forces': np.asarray(forces, dtype=float).reshape(-1, 3),
        'virial': np.asarray(virial, dtype=float).reshape(3, 3),
    }


def is_finite(label: dict) -> bool:
    """Whether every array of a label is finite (a NaN label is a failed label, not data)."""
    return all(np.all(np.isfinite(np.asarray(label[name], dtype=float))) for name in ('energy', 'forces', 'virial'))


def label_node(label: dict) -> orm.ArrayData:
    """An (unstored) ``ArrayData`` of the label contract: to be returned by an engine's calcfunction."""
    node = orm.ArrayData()
    for name, array in label_arrays(label['energy'], label['forces'], label['virial']).items():
        node.set_array(name, array)
    return node


def failed_process(node) -> str:
    """Why a process gave no label, for the ``failed`` record."""
    return f'{node.process_label} <{node.pk}> failed: exit {node.exit_status} {node.exit_message or ""}'.strip()
