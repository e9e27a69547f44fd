"""The sqlglot dialect of data statements: Databricks, with ``''`` as the quote escape.

Spark would read ``'it''s'`` as ``'it' 's'``; the rest of this SQL doubles a quote to escape it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlglot.dialects.dialect import Dialect

_DIALECT: type[Dialect] | None = None


def sqlglot_dialect() -> type[Dialect]:
    """The sqlglot dialect used for data statements (built lazily: importing sqlglot takes a moment)."""
    global _DIALECT
    if _DIALECT is None:
        from sqlglot.dialects.databricks import Databricks

        class SharelabDatabricks(Databricks):
            class Tokenizer(Databricks.Tokenizer):
                STRING_ESCAPES = ["'"]

        _DIALECT = SharelabDatabricks
        # sqlglot warns before falling back to an opaque "Command"; the parser reports that case itself.
        logging.getLogger("sqlglot").setLevel(logging.ERROR)
    return _DIALECT
