"""sharelab: an offline, Jupyter-first teaching lab for Delta Sharing.

The provider side (catalog, SQL, server, datasets) and the recipient side (open protocol only) live in
separate modules; see ``docs/design.md``.
"""

__version__ = "0.1.0"
