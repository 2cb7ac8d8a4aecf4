"""Reference engines: the oracle (SevenNet-0, a PBE stand-in) and CP2K input/output helpers."""
