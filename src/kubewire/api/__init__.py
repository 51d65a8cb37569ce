"""The object model: one module per API group, pure data (decode, default, validate)."""
