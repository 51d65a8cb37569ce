"""The ``kubewire`` command line: the only layer that reads flags, files and environment."""
