"""Partial radial distribution functions and Si coordination (Fig. 4, and checks of found structures).

Distances come from ASE's periodic neighbour list, so cells smaller than ``2 * rmax`` need no supercell.
The normalisation is the one of ``ase.geometry.rdf.get_rdf`` (ASE >= 3.27) and LAMMPS ``compute rdf``:
g_ab(r) = n_ab(r) / (N_a rho_b 4 pi r^2 dr), so g_ab = g_ba and g -> 1 at long range in a liquid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

PAIRS = (('Si', 'Si'), ('Si', 'O'), ('O', 'O'))
SI_O_CUTOFF = 2.3  # Å: first minimum of g_SiO in silica melts and glasses; crystals have Si-O <= 1.9 Å


def _as_atoms(structure):
    """ase.Atoms of an ase.Atoms, pymatgen Structure or AiiDA StructureData."""
    from ase import Atoms

    if isinstance(structure, Atoms):
        return structure
    if hasattr(structure, 'get_ase'):  # orm.StructureData
        return structure.get_ase()
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)


def _images(structures) -> list:
    if isinstance(structures, Iterable) and not hasattr(structures, 'cell') and not hasattr(structures, 'lattice'):
        images = [_as_atoms(s) for s in structures]
    else:
        images = [_as_atoms(structures)]
    if not images:
        raise ValueError('no structures given')
    for atoms in images:
        if not all(atoms.pbc) or atoms.cell.volume <= 0:
            raise ValueError('RDFs here need periodic structures with a 3D cell')
    return images


def pair_key(a: str, b: str) -> str:
    """Name of the pair (``'Si-O'``): the key of :func:`partial_rdfs` results."""
    return f'{a}-{b}'


def partial_rdfs(
    structures,
    rmax: float = 6.0,
    nbins: int = 120,
    pairs: Sequence[tuple[str, str]] = PAIRS,
    smearing: float = 0.0,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Partial RDFs g_ab(r) of one periodic structure or averaged over several (an MD trajectory).

    :param structures: ``ase.Atoms`` / pymatgen ``Structure`` / ``StructureData``, or a list of them.
    :param rmax: largest distance (Å); :param nbins: number of bins on (0, rmax].
    :param smearing: standard deviation (Å) of a Gaussian broadening, 0 for none; broadening lets
        crystals at slightly different volumes be compared (:func:`rdf_similarity`).
    :returns: ``(r, {'Si-Si': g, 'Si-O': g, 'O-O': g})``, r the bin centres (Å).
    :raises ValueError: for a pair whose element is absent, or a non-periodic structure.
    """
    from ase.data import atomic_numbers
    from ase.neighborlist import neighbor_list
    from scipy.ndimage import gaussian_filter1d

    if rmax <= 0 or nbins < 2:
        raise ValueError(f'need rmax > 0 and nbins >= 2, got {rmax}, {nbins}')
    edges = np.linspace(0.0, rmax, nbins + 1)
    dr = edges[1] - edges[0]
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    totals = {pair_key(a, b): np.zeros(nbins) for a, b in pairs}
    images = _images(structures)
    for atoms in images:
        i, j, d = neighbor_list('ijd', atoms, rmax)
        numbers = atoms.numbers
        for a, b in pairs:
            za, zb = atomic_numbers[a], atomic_numbers[b]
            n_a, n_b = np.count_nonzero(numbers == za), np.count_nonzero(numbers == zb)
            if n_a == 0 or n_b == 0:
                missing = a if n_a == 0 else b
                raise ValueError(f'pair {a}-{b}: no {missing} in the structure {atoms.get_chemical_formula()}')
            mask = (numbers[i] == za) & (numbers[j] == zb)
            counts, _ = np.histogram(d[mask], bins=edges)
            totals[pair_key(a, b)] += counts / (n_a * n_b / atoms.cell.volume * shell)
    rdfs = {}
    for key, total in totals.items():
        g = total / len(images)
        rdfs[key] = gaussian_filter1d(g, smearing / dr, mode='nearest') if smearing > 0 else g
    return 0.5 * (edges[1:] + edges[:-1]), rdfs


def first_peak(r, g) -> float:
    """Position (Å) of the first peak of g(r): from the first bin above half the maximum, up to its local top."""
    g = np.asarray(g, dtype=float)
    if not np.any(g > 0):
        raise ValueError('g(r) is zero everywhere: no peak')
    start = int(np.argmax(g >= 0.5 * g.max()))
    k = start
    while k + 1 < g.size and g[k + 1] >= g[k]:
        k += 1
    return float(np.asarray(r)[k])


def rdf_similarity(rdfs_a: dict[str, np.ndarray], rdfs_b: dict[str, np.ndarray]) -> float:
    """Similarity of two sets of partial RDFs on the same r grid: mean over the shared pairs of the cosine of (g - 1).

    1 for identical structures, about 0 for unrelated ones (the fingerprint of Oganov & Valle,
    J. Chem. Phys. 130, 104504 (2009), without its weights). Compute both sets with the same ``rmax``,
    ``nbins`` and some ``smearing`` (0.1–0.2 Å), else crystals at slightly different volumes look unrelated.
    """
    shared = [key for key in rdfs_a if key in rdfs_b]
    if not shared:
        raise ValueError(f'no pair in common: {list(rdfs_a)} vs {list(rdfs_b)}')
    cosines = []
    for key in shared:
        fa = np.asarray(rdfs_a[key], dtype=float) - 1.0
        fb = np.asarray(rdfs_b[key], dtype=float) - 1.0
        if fa.shape != fb.shape:
            raise ValueError(f'{key}: the two RDFs have different grids ({fa.size} vs {fb.size} bins)')
        norm = np.linalg.norm(fa) * np.linalg.norm(fb)
        cosines.append(float(fa @ fb / norm) if norm > 0 else float('nan'))
    return float(np.mean(cosines))


def coordination_numbers(structure, center: str = 'Si', neighbor: str = 'O', cutoff: float = SI_O_CUTOFF) -> np.ndarray:
    """Number of ``neighbor`` atoms within ``cutoff`` Å of every ``center`` atom (periodic images included).

    Si in SiO2: 4 in the tetrahedral (low-pressure) phases, 6 in the octahedral ones (stishovite, seifertite).
    """
    from ase.data import atomic_numbers
    from ase.neighborlist import neighbor_list

    atoms = _as_atoms(structure)
    zc, zn = atomic_numbers[center], atomic_numbers[neighbor]
    centers = np.flatnonzero(atoms.numbers == zc)
    if centers.size == 0:
        raise ValueError(f'no {center} atom in {atoms.get_chemical_formula()}')
    i, j = neighbor_list('ij', atoms, cutoff)
    counts = np.bincount(i[atoms.numbers[j] == zn], minlength=len(atoms))
    return counts[centers]


def mean_coordination(structure, center: str = 'Si', neighbor: str = 'O', cutoff: float = SI_O_CUTOFF) -> float:
    """Average of :func:`coordination_numbers`."""
    return float(np.mean(coordination_numbers(structure, center, neighbor, cutoff)))
