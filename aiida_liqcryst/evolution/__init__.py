"""Evolutionary crystal-structure search, plain Python (no AiiDA): operators, population bookkeeping, analysis.

- :mod:`.operators`: random symmetric crystals (pyxtal), cut-and-splice heredity, strain / permutation / rattle
  mutations, distance checks; each keeps the composition.
- :mod:`.population`: offspring of a generation, duplicates (pymatgen StructureMatcher), space groups, stagnation.
- :mod:`.analysis`: re-labeling metrics and plot, Si coordination, RDF similarity to the polymorph library.

The AiiDA work chain is :class:`aiida_liqcryst.workflows.evo_search.EvoSearchWorkChain`.
"""
