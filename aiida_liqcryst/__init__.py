"""aiida-liqcryst: liquid-only active learning of DeePMD potentials, and their transfer to crystals."""

__version__ = '0.1.0'
