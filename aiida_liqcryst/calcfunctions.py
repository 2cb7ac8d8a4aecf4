"""Calculation functions of the plugin that are not tied to one workflow."""

from aiida import orm
from aiida.engine import calcfunction

from aiida_liqcryst.structures.random_packing import random_packing


@calcfunction
def random_melt(composition: orm.Dict, formula_units: orm.Int, density: orm.Float, min_distance: orm.Float, seed: orm.Int):
    """A random dense packing as a StructureData, its recipe kept in the provenance graph."""
    atoms = random_packing(composition.get_dict(), formula_units.value, density.value, min_distance.value, seed.value)
    return orm.StructureData(ase=atoms)
