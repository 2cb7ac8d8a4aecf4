"""Input checks shared by several processes (plain functions: they return a message or None)."""

from __future__ import annotations

import math

import numpy as np


def missing_elements(structure, type_map) -> list[str]:
    """Elements of ``structure`` (StructureData) that ``type_map`` lacks, sorted; [] when the type map is empty or
    None (nothing to check against)."""
    if not type_map:
        return []
    return sorted(set(structure.get_symbols_set()) - set(type_map))


def json_safe(value):
    """``value`` with NaN/inf as None and numpy scalars as Python ones, recursively: what an AiiDA Dict and JSON
    store (neither takes NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def code_error(code, plugin: str, port: str = 'code', what: str = '') -> str | None:
    """Why ``code`` cannot run the calculation plugin ``plugin``, or None.

    A missing code is an error; a code whose ``default_calc_job_plugin`` is another plugin is one too (a code
    without a default plugin is accepted: ``dp`` serves two plugins).
    """
    what = f' ({what})' if what else ''
    if code is None:
        return f'`{port}`: no code given; give a code of the calculation plugin `{plugin}`{what}'
    actual = code.default_calc_job_plugin
    if actual is not None and actual != plugin:
        return (
            f'`{port}` <{code.full_label}> runs the plugin `{actual}`; give a code of the calculation plugin '
            f'`{plugin}`{what}'
        )
    return None


def code_validator(plugin: str, port: str = 'code', what: str = ''):
    """A port validator of a code input: the code must run ``plugin`` (see :func:`code_error`)."""

    def validator(value, _=None):
        return None if value is None else code_error(value, plugin, port, what)

    return validator


def task_settings_validator(port: str, allowed: tuple, task: dict, hint: str = ''):
    """A validator of a Dict of ``aiida-liqcryst-ase`` task settings: only ``allowed`` keys, values that
    :func:`aiida_liqcryst.engines.ase_tasks.check_settings` accepts once merged into ``task``."""

    def validator(value, _=None):
        if value is None:
            return None
        settings = value.get_dict()
        unknown = set(settings) - set(allowed)
        if unknown:
            return f'`{port}`: unknown key(s) {sorted(unknown)}; allowed: {list(allowed)}{hint}'
        from aiida_liqcryst.engines import ase_tasks

        try:
            ase_tasks.check_settings({**task, **settings})
        except ValueError as exc:
            return f'`{port}`: {exc}'
        return None

    return validator
