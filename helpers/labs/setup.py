"""What the instructor (the provider) prepares before a lab: data, shares, a running server, profiles.

Labs call these idempotently, so a lab can be re-run, and a learner working alone gets the same starting
point as one in a workshop whose instructor did it by hand. Provider side: recipients' checks never use it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from helpers.home import LabHome

#: the Redshift multi-domain scenario's topology, idempotent (notebook 02 teaches it statement by statement).
AIRLINE_TOPOLOGY = """
CREATE SHARE IF NOT EXISTS airline_core_share COMMENT 'Core airline data every domain needs';
CREATE SHARE IF NOT EXISTS sales_data_share COMMENT 'Sales domain data';
CREATE SHARE IF NOT EXISTS operations_data_share COMMENT 'Operations domain data';
CREATE RECIPIENT IF NOT EXISTS sales_team COMMENT 'Sales analytics team';
CREATE RECIPIENT IF NOT EXISTS operations_team COMMENT 'Operations analytics team';
GRANT SELECT ON SHARE airline_core_share TO RECIPIENT sales_team;
GRANT SELECT ON SHARE sales_data_share TO RECIPIENT sales_team;
GRANT SELECT ON SHARE airline_core_share TO RECIPIENT operations_team;
GRANT SELECT ON SHARE operations_data_share TO RECIPIENT operations_team;
"""

_SCHEMA_OF_SHARE = {
    "airline_core_share": "airline.shared_airline",
    "sales_data_share": "airline.sales_domain",
    "operations_data_share": "airline.operations_domain",
}


def lab_home(home: str | os.PathLike[str] | None = None) -> LabHome:
    return LabHome.resolve(home)


def ensure_dataset(
    dataset: str,
    home: str | os.PathLike[str] | None = None,
    *,
    scale: str = "small",
    seed: int = 42,
) -> None:
    """Generate ``dataset`` unless the catalog already has its tables."""
    from helpers.catalog import open_catalog
    from helpers.datagen import generate

    catalog = open_catalog(home)
    if not catalog.list_tables(catalog=dataset):
        generate(dataset, home, scale=scale, seed=seed, progress=False)


def ensure_airline_topology(home: str | os.PathLike[str] | None = None) -> None:
    """The Redshift multi-domain scenario's shares, recipients and grants (schemas added once)."""
    from helpers.provider import Provider

    provider = Provider(home)
    provider.sql(AIRLINE_TOPOLOGY)
    for share, schema in _SCHEMA_OF_SHARE.items():
        entries = provider.catalog.share_entries(share)
        if not any(e.kind == "schema" and e.source.lower() == schema for e in entries):
            provider.sql(f"ALTER SHARE {share} ADD SCHEMA {schema} WITH HISTORY")


def ensure_server(home: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The lab home's server (:func:`helpers.server.ensure_server`: started when none runs, on
    ``$SHARELAB_PORT``, else 8080, else a free port)."""
    from helpers.server.lifecycle import ensure_server as ensure

    return ensure(home)


def issue_profile(
    recipient: str, home: str | os.PathLike[str] | None = None, *, name: str | None = None
) -> Path:
    """A fresh token for ``recipient`` written as a profile under the lab home's ``profiles/``."""
    from helpers import profiles
    from helpers.catalog import open_catalog

    lab = lab_home(home)
    state = ensure_server(home)
    catalog = open_catalog(home)
    live = [t for t in catalog.list_tokens(recipient) if t.is_live()]
    path = lab.profiles_dir / f"{name or recipient}.share"
    # Re-running a lab must not trip the two-live-tokens rule: past it, rotate instead of issuing.
    if len(live) >= 2:
        issued = catalog.rotate_token(recipient, expire_existing_in_seconds=0)
        profiles.write_profile(path, profiles.profile_dict(state["endpoint"], issued))
    else:
        profiles.issue_profile(catalog, recipient, state["endpoint"], out=path)
    return path


def wait_for_audit(
    home: str | os.PathLike[str] | None,
    recipient: str,
    action: str,
    at_least: int,
    timeout: float = 15.0,
) -> int:
    """Wait until the server's (batched) audit writer has recorded ``at_least`` such requests."""
    import time

    from helpers.catalog import open_catalog

    catalog = open_catalog(home)
    deadline = time.monotonic() + timeout
    while True:
        audit = catalog.audit_frame()
        n = int(
            (
                (audit["recipient"].str.lower() == recipient.lower()) & (audit["action"] == action)
            ).sum()
        )
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def prepare_recipient_lab(home: str | os.PathLike[str] | None = None) -> Path:
    """Airline data, the Redshift multi-domain scenario's shares, a running server and a profile with the sales team's grants.

    The lab's recipient is its own (``lab_sales_analyst``, granted what ``sales_team`` has), so issuing
    its tokens never expires the sales team's profile handed out by notebook 02.
    """
    from helpers.provider import Provider

    ensure_dataset("airline", home)
    ensure_airline_topology(home)
    Provider(home).sql("""
        CREATE RECIPIENT IF NOT EXISTS lab_sales_analyst COMMENT 'Lab 2: an analyst of the sales team';
        GRANT SELECT ON SHARE airline_core_share TO RECIPIENT lab_sales_analyst;
        GRANT SELECT ON SHARE sales_data_share TO RECIPIENT lab_sales_analyst;
    """)
    ensure_server(home)
    return issue_profile("lab_sales_analyst", home, name="lab2_sales_analyst")
