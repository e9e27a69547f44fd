"""The provider's Python API: one method per SQL statement, plus :meth:`Provider.sql`.

``Provider(home)`` opens the lab home's catalog (:mod:`helpers.catalog`). Control-plane methods (shares,
recipients, grants) are thin, checked wrappers around the catalog that return pandas DataFrames shaped
like Databricks' results. Data methods run real engines:

* reads (``SELECT``, ``table_changes``, ``DESCRIBE HISTORY``) use DuckDB over
  ``DeltaTable(location).to_pyarrow_dataset()`` (no DuckDB extensions, so no network);
* writes (``INSERT``, ``UPDATE``, ``DELETE``, ``MERGE``, ``SET TBLPROPERTIES``) are Delta commits made by
  deltalake, so a table with ``delta.enableChangeDataFeed = true`` gets real ``_change_data`` files.

Table names in SQL are resolved against the catalog: ``catalog.schema.table`` (a shorter name works when it
matches exactly one registered table), ``delta.`/path``` and ``system.access.audit`` (the sharing server's
audit log).

The modules, in the order they build on each other:

* :mod:`~helpers.provider.frames`: result DataFrames, timestamps, Arrow casts;
* :mod:`~helpers.provider.base`: the lab home, catalog and ``USE`` defaults every part shares;
* :mod:`~helpers.provider.control`: shares, comments, grants, table registration;
* :mod:`~helpers.provider.recipients`: recipients, tokens, activation links;
* :mod:`~helpers.provider.engine`: table names → Delta tables, DuckDB reads, table metadata;
* :mod:`~helpers.provider.writes`: ``INSERT`` / ``UPDATE`` / ``DELETE`` / ``MERGE`` via deltalake;
* :mod:`~helpers.provider.ddl`: catalogs, schemas, managed tables; :mod:`~helpers.provider.maintenance`:
  ``TRUNCATE``, ``OPTIMIZE``, ``VACUUM``, ``RESTORE``, ``SET``; :mod:`~helpers.provider.audit_view`: the
  audit log in Databricks' shape;
* :mod:`~helpers.provider.executor`: parsed statement → method, scripts;
* :mod:`~helpers.provider.cli` (``sharelab sql``) and :mod:`~helpers.provider.magic` (``%%sharelab``).
"""

from __future__ import annotations

from helpers.provider.executor import StatementRunner, execute, iter_script, run_script
from helpers.provider.recipients import DEFAULT_PUBLIC_URL, forget_activation_codes
from helpers.provider.writes import MergeClause

__all__ = [
    "DEFAULT_PUBLIC_URL",
    "MergeClause",
    "Provider",
    "execute",
    "forget_activation_codes",
    "iter_script",
    "run_script",
]


class Provider(StatementRunner):
    """The data provider of one lab home: catalog, SQL and Delta tables.

    :param home: the lab home (default: ``$SHARELAB_HOME``, else ``~/.sharelab``).
    """
