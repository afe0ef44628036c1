"""Thin Prefect flows that compose the tasks in :mod:`tasks`.

Every flow takes JSON-safe parameters (Hydra override strings plus typed options)
so it runs the same from the command line, from a test and from a deployment.
"""
