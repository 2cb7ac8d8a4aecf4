"""Protocols: named, tested sets of inputs in YAML files beside this module (as in aiida-quantumespresso)."""

from __future__ import annotations

import copy
import pathlib

import yaml

PROTOCOLS_DIR = pathlib.Path(__file__).parent


def recursive_merge(left: dict, right: dict) -> dict:
    """``left`` updated with ``right``, nested dictionaries merged key by key (a new dict)."""
    merged = copy.deepcopy(left)
    for key, value in right.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = recursive_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class ProtocolMixin:
    """Reads ``<protocols>/<_protocol_file>.yaml``: ``default_protocol``, ``protocols: {name: {description, ...}}``.

    A protocol may name a ``base`` protocol whose inputs it updates (recursively).
    """

    _protocol_file: str

    @classmethod
    def _load_protocol_file(cls) -> dict:
        with open(PROTOCOLS_DIR / f'{cls._protocol_file}.yaml', encoding='utf-8') as handle:
            return yaml.safe_load(handle)

    @classmethod
    def get_default_protocol(cls) -> str:
        return cls._load_protocol_file()['default_protocol']

    @classmethod
    def get_available_protocols(cls) -> dict:
        """Protocol names and their descriptions."""
        return {name: spec['description'] for name, spec in cls._load_protocol_file()['protocols'].items()}

    @classmethod
    def get_allowed_overrides(cls) -> list[str]:
        """Top-level keys an override may set: those of any protocol of the file."""
        protocols = cls._load_protocol_file()['protocols']
        return sorted({key for spec in protocols.values() for key in spec} - {'description', 'base'})

    @classmethod
    def get_protocol_inputs(cls, protocol: str | None = None, overrides: dict | None = None) -> dict:
        """The inputs of ``protocol`` (default protocol when None), recursively updated with ``overrides``.

        :raises ValueError: for an unknown protocol, naming the available ones, or for override keys that no protocol
            of the file has (a typo would otherwise be ignored), naming the allowed ones.
        """
        data = cls._load_protocol_file()
        protocol = protocol or data['default_protocol']
        protocols = data['protocols']
        if protocol not in protocols:
            raise ValueError(f'unknown protocol `{protocol}` for {cls.__name__}: choose one of {sorted(protocols)}')
        unknown = sorted(set(overrides or {}) - set(cls.get_allowed_overrides()))
        if unknown:
            raise ValueError(f'unknown override keys {unknown} for {cls.__name__}: allowed are '
                             f'{cls.get_allowed_overrides()}')
        inputs = copy.deepcopy(protocols[protocol])
        inputs.pop('description', None)
        base = inputs.pop('base', None)
        if base:
            inputs = recursive_merge(cls.get_protocol_inputs(base), inputs)
        return recursive_merge(inputs, overrides or {})
