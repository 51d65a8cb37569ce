"""Placeholder: filled in by its owner."""

from kubewire.api.registry import Kind

KINDS: list[Kind] = []
