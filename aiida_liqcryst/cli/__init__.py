"""Command line interface ``aiida-liqcryst``."""
