"""The ML layer: pipelines, adapters, seeds, PNG metadata. Plain Python; no Django.

Import submodules explicitly (services.engine, services.pipelines): importing this package alone
loads neither torch nor diffusers.
"""
