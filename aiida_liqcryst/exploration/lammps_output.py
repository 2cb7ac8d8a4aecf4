"""Reading what an exploration MD leaves behind: the thermo table of ``log.lammps``, the dump, the errors."""

from __future__ import annotations

import io
import re

import numpy as np

BAR_PER_GPA = 1.0e4
# thermo headers LAMMPS prints for ``thermo_style custom`` keywords that differ from the keyword itself
HEADER_KEYWORDS = {'volume': 'vol', 'poteng': 'pe', 'kineng': 'ke', 'toteng': 'etotal'}

# LAMMPS errors that mean the dynamics blew up (atoms flew away or coordinates became NaN/inf).
UNSTABLE_PATTERNS = ('Lost atoms', 'Out of range atoms', 'Non-numeric atom coords', 'Non-numeric pressure', 'Too many neighbor bins')
ERROR_LINE = re.compile(r'^ERROR(?: on proc \d+)?:\s*(.*)$', re.MULTILINE)


def read_thermo(text: str) -> dict[str, np.ndarray]:
    """The thermo table(s) of a LAMMPS log as arrays keyed by thermo keyword (``step temp press vol ...``).

    Rows of every ``run`` are concatenated; a truncated last line (the run died while writing) is dropped.
    Pressure stays in the log's unit (bar for metal units): see :func:`thermo_in_gpa`.
    """
    columns: list[str] | None = None
    rows: list[list[float]] = []
    in_table = False
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == 'Step':
            names = [HEADER_KEYWORDS.get(w.lower(), w.lower()) for w in words]
            if columns is None:
                columns = names
            in_table = names == columns
            continue
        if not in_table:
            continue
        if words[0] == 'Loop' or words[0].startswith('ERROR'):
            in_table = False  # end of this run's table (warnings may interleave: they are skipped below)
            continue
        if len(words) != len(columns):
            continue
        try:
            rows.append([float(w) for w in words])
        except ValueError:
            continue
    if columns is None:
        return {}
    table = np.array(rows, dtype=float).reshape(-1, len(columns))
    result = {name: table[:, i] for i, name in enumerate(columns)}
    result['step'] = result['step'].astype(int)
    return result


def thermo_in_gpa(thermo: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A copy of the thermo arrays with ``press`` converted from bar (metal units) to GPa."""
    result = dict(thermo)
    if 'press' in result:
        result['press'] = result['press'] / BAR_PER_GPA
    return result


def lammps_errors(text: str) -> list[str]:
    """The ``ERROR:`` messages of a LAMMPS log or stdout, in order."""
    return [m.group(1).strip() for m in ERROR_LINE.finditer(text)]


def is_unstable(error: str) -> bool:
    """Whether a LAMMPS error message means the MD blew up (a shorter timestep may help)."""
    return any(pattern in error for pattern in UNSTABLE_PATTERNS)


def finished(text: str) -> bool:
    """Whether LAMMPS reached its normal end (``Total wall time``)."""
    return 'Total wall time' in text


def read_dump(text: str, elements: list[str] | None = None) -> list[dict]:
    """Frames of a LAMMPS text dump with columns ``id type x y z`` (sorted by id).

    Each frame: ``step`` (int), ``types`` (1-based LAMMPS types), ``positions`` (N, 3) Å, ``cell`` (3, 3) Å
    and, when ``elements`` (element of each type, in type order) is given, ``symbols``. A truncated last
    frame (the run died while writing it) is dropped.
    """
    from ase.io.lammpsrun import iread_lammps_dump_text

    frames = []
    iterator = iread_lammps_dump_text(io.StringIO(text), index=slice(None))
    while True:
        try:
            atoms = next(iterator)
        except StopIteration:
            break
        except (RuntimeError, ValueError, IndexError, TypeError):
            break  # an incomplete chunk can only be the last one
        # without a specorder ASE stores the LAMMPS type as the atomic number
        types = atoms.numbers.astype(int)
        frame = {
            'step': int(atoms.info['timestep']),
            'types': types,
            'positions': np.asarray(atoms.positions, dtype=float),
            'cell': np.asarray(atoms.cell.array, dtype=float),
        }
        if elements is not None:
            frame['symbols'] = [elements[t - 1] for t in types]
        frames.append(frame)
    return frames
