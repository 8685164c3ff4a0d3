"""The ML layer: pipelines, adapters, seeds, PNG metadata. Plain Python; no Django.

Import submodules explicitly (services.engine, services.devmodels): importing this package alone
loads neither torch nor diffusers.
"""
