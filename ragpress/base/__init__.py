"""The base layer: what every component and the application stand on, importing neither.

The unit schema, settings, the model registry and loading, the index binding (and the embedded Edge store), the
database, and the limits on what a caller may send. Nothing here imports a component package or the application.
"""
