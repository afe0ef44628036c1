"""The framework's config groups, shipped as package data: ``pkg://prefab_mlops.conf``.

A project's primary config (``conf/pipeline.yaml``) puts this package on Hydra's search
path, so the stock groups (model, evaluate, paths, register, promote, monitor,
orchestration, ``tracking=disabled``) come with the installed framework, and a project
holds only its own groups (data, validate, features, experiment, storage, tracking,
inference, local). A file of the same group and name in the project's ``conf/`` takes
precedence over the one here.
"""
