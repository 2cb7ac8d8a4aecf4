"""DeePMD-kit data types, calculations and workflows for AiiDA.

Self-contained: nothing here imports from the rest of :mod:`aiida_liqcryst`, so this subpackage can be
split out as an ``aiida-deepmd`` distribution.
"""
