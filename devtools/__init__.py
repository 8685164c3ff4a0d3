"""Development tooling kept out of the production packages: offline development checkpoints.

Plain Python like ``services/`` (no Django); used by the ``build_dev_models`` management command, the
tests and the benchmarks. Import submodules explicitly (``devtools.devmodels``).
"""
