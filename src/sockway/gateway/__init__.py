"""The assembly: configuration loading, the registry of API types, the gateway that builds
one node, its broker and front doors and listeners, the ops endpoints, and the supervisor of
``--workers N``. The only package that imports the front doors."""
