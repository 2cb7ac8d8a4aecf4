"""How local is a reference potential? The force error floor of any model with a finite cut-off.

A short-range model (DeePMD se_e2_a with cut-off ``rc``) predicts the force on atom i from the atoms within ``rc``
of i only. If the reference (the oracle: SevenNet-0, a message-passing network whose receptive field is several
times its 5 Å cut-off) also depends on atoms farther away, no local model can fit that part.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms


def displace_outside(atoms: Atoms, centre: int, rc: float, sigma: float, rng: np.random.Generator,
                     min_distance: float | None = None, max_tries: int = 100) -> np.ndarray:
    """Positions of ``atoms`` with every atom farther than ``rc`` Å from ``centre`` (minimum image) moved by
    Gaussian noise of rms ``sigma`` Å per Cartesian component; the atoms within ``rc`` (and ``centre``) stay put.

    ``min_distance``: redraw until no two atoms are closer than this (Å). Independent displacements of bonded
    atoms (thermal motion is correlated) can make contacts the liquid never has, whose huge forces are not part
    of the floor.
    """
    distances = atoms.get_distances(centre, np.arange(len(atoms)), mic=True)
    far = distances > rc
    trial = atoms.copy()
    for _ in range(max_tries):
        positions = atoms.get_positions()
        positions[far] += rng.normal(0.0, sigma, size=(int(far.sum()), 3))
        if not min_distance:
            return positions
        trial.set_positions(positions)
        pairs = trial.get_all_distances(mic=True)[far]
        if np.sort(pairs, axis=1)[:, 1].min() >= min_distance:  # column 0: the atom itself
            return positions
    raise RuntimeError(f'no displacement of rms {sigma} Å kept all atoms {min_distance} Å apart in {max_tries} tries')


def pick_centres(atoms: Atoms, n_centres: int, rng: np.random.Generator) -> np.ndarray:
    """``n_centres`` distinct atom indices, split as evenly as possible between the elements (so Si and O both)."""
    symbols = np.array(atoms.get_chemical_symbols())
    elements = sorted(set(symbols))
    centres = []
    for k, element in enumerate(elements):
        wanted = n_centres // len(elements) + (k < n_centres % len(elements))
        candidates = np.flatnonzero(symbols == element)
        centres.extend(rng.choice(candidates, size=min(wanted, len(candidates)), replace=False).tolist())
    return np.array(sorted(centres))


def locality_floor(atoms: Atoms, calculator, cutoffs, sigma: float, n_centres: int = 16, n_samples: int = 2,
                   rng: np.random.Generator | int | None = None, centres=None, log=None,
                   min_distance: float | None = None) -> dict:
    """Lower bound on the force RMSE of any model that sees only the atoms within ``rc`` of an atom.

    For each centre atom i and each cut-off rc, ``n_samples`` independent copies of the structure are made in which
    every atom farther than rc from i (minimum-image distance) is moved by Gaussian noise of rms ``sigma`` Å per
    component, and the atoms within rc are not moved; the reference ``calculator`` gives the force on i in each.

    Why this is the floor: a model with cut-off rc is a function of the rc-environment of i, so at best it predicts
    the conditional mean E[F_i | environment within rc]; its force error is then at least the conditional standard
    deviation of F_i given that environment. Holding the environment fixed and varying the rest, the spread of F_i
    over the samples estimates that conditional std (per component; pooled as an RMS over centres and components,
    which is how a force RMSE is computed). With ``sigma`` a vibration amplitude this is a LOWER bound: in the
    liquid the atoms beyond rc do not only vibrate about one configuration but rearrange entirely, which spreads
    F_i further. (Atoms starting just outside rc can move inside by a few sigma; a model's smooth cut-off gives
    them almost no weight, so this leak is small for sigma << rc - rcut_smth.)

    :param calculator: any ASE calculator (the oracle, or e.g. Lennard-Jones in tests); called
        ``1 + len(centres) * len(cutoffs) * n_samples`` times.
    :param cutoffs: cut-offs rc in Å.
    :param sigma: rms displacement per component (Å) of the atoms beyond rc.
    :param n_samples: displaced copies per centre and cut-off (>= 2: a standard deviation needs two).
    :param centres: atom indices; default ``n_centres`` drawn at random, as evenly as possible over the elements.
    :param log: optional callable given one progress line per centre.
    :param min_distance: see :func:`displace_outside` (without it a few close contacts can dominate the RMS at
        large ``sigma``: compare ``rms`` with ``median``).
    :returns: ``{rc: {'rms', 'max', 'median', 'per_centre', 'rms_change', 'rms_by_element', 'moved_mean'}}`` in
        eV/Å, where ``rms`` is the pooled std over samples (the floor), ``per_centre`` the per-centre values (RMS
        over its three components), ``max`` and ``median`` their largest and median,
        ``rms_change`` the RMS change of F_i from the undisplaced structure (same quantity in the linear regime,
        from ``n_samples`` rather than ``n_samples - 1`` degrees of freedom per centre), ``rms_by_element`` the
        floor per element of the centre, and ``moved_mean`` the mean number of atoms moved.
    """
    if n_samples < 2:
        raise ValueError(f'n_samples must be >= 2 to estimate a standard deviation, got {n_samples}')
    rng = np.random.default_rng(rng)
    centres = pick_centres(atoms, n_centres, rng) if centres is None else np.asarray(centres, dtype=int)
    work = atoms.copy()
    work.calc = calculator
    reference = work.get_forces()[centres].copy()
    symbols = np.array(atoms.get_chemical_symbols())[centres]

    forces = np.empty((len(centres), len(cutoffs), n_samples, 3))
    moved = np.empty((len(centres), len(cutoffs)))
    for c, centre in enumerate(centres):
        for r, rc in enumerate(cutoffs):
            moved[c, r] = np.sum(atoms.get_distances(centre, np.arange(len(atoms)), mic=True) > rc)
            for s in range(n_samples):
                work.set_positions(displace_outside(atoms, centre, rc, sigma, rng, min_distance))
                forces[c, r, s] = work.get_forces()[centre]
        if log is not None:
            log(f'centre {c + 1}/{len(centres)} ({symbols[c]} {centre}): std over samples per rc '
                + ' '.join(f'{np.sqrt(np.mean(np.var(forces[c, r], axis=0, ddof=1))):.3f}'
                           for r in range(len(cutoffs))))

    variance = np.var(forces, axis=2, ddof=1)  # (centre, rc, component)
    change = forces - reference[:, None, None, :]
    result = {}
    for r, rc in enumerate(cutoffs):
        per_centre = np.sqrt(np.mean(variance[:, r], axis=1))
        result[float(rc)] = {
            'rms': float(np.sqrt(np.mean(variance[:, r]))),
            'max': float(per_centre.max()),
            'median': float(np.median(per_centre)),
            'per_centre': per_centre.tolist(),
            'rms_change': float(np.sqrt(np.mean(change[:, r] ** 2))),
            'rms_by_element': {el: float(np.sqrt(np.mean(variance[symbols == el, r]))) for el in sorted(set(symbols))},
            'moved_mean': float(moved[:, r].mean()),
        }
    return result
