"""Builds the optional C extension ``curation._speedups`` (everything else is in pyproject.toml).

``optional=True``: without a C compiler the install still succeeds and the filter runs its
numpy versions of the same loops (see ``curation/speedups.py``).
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform != "win32":  # POSIX calls (fstatat)
    ext_modules.append(
        Extension("curation._speedups", ["curation/_speedups.c"], optional=True, extra_compile_args=["-O2"])
    )

setup(ext_modules=ext_modules)
