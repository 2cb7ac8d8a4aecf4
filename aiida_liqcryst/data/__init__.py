"""Data files shipped with the plugin (``polymorphs/*.cif``: the SiO2 crystals of the paper's Fig. 2)."""
