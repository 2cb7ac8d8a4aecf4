"""The plugin's work chains, one per module."""
