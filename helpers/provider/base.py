"""The state every part of :class:`helpers.provider.Provider` shares: the lab home, its catalog, ``USE``."""

from __future__ import annotations

import os

from helpers.catalog import Catalog, open_catalog
from helpers.home import LabHome


class ProviderBase:
    """The lab home, its open catalog and the ``USE`` defaults of one provider object.

    :param home: the lab home (default: ``$SHARELAB_HOME``, else ``~/.sharelab``).
    """

    def __init__(self, home: str | os.PathLike[str] | LabHome | None = None) -> None:
        self.home = home if isinstance(home, LabHome) else LabHome.resolve(home)
        self.catalog: Catalog = open_catalog(self.home)
        #: ``USE CATALOG`` / ``USE SCHEMA`` defaults for one- and two-part table names (this object only).
        self.current_catalog: str | None = None
        self.current_schema: str | None = None

    def __repr__(self) -> str:
        return f"Provider(home={str(self.home.path)!r})"
