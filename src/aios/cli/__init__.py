"""The ``aios`` command line: a client of the kernel like any other."""
