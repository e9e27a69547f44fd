"""One Unicode-aware name rule (NFKC + case folding) for the grant check, the lookups and collisions:
no cross-share read through ``DONNÉES``/``données`` or the Kelvin sign, with the official client."""

from __future__ import annotations

import uuid

import delta_sharing
import pytest
import requests

from helpers.catalog import clock, name_key
from helpers.exceptions import AlreadyExistsError

from .conftest import SharingLab


def test_name_key() -> None:
    assert name_key("DONNÉES") == name_key("données") == name_key("donne\u0301es")
    assert name_key("\u212aPI") == name_key("KPI") == "kpi"
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("sales") != name_key("sale")


def test_colliding_names_are_refused(lab: SharingLab) -> None:
    tag = uuid.uuid4().hex[:6]
    lab.catalog.create_share(f"DONNÉES_{tag}")
    with pytest.raises(AlreadyExistsError, match="already exists"):
        lab.catalog.create_share(f"données_{tag}")
    assert lab.catalog.create_share(f"données_{tag}", if_not_exists=True).name == f"DONNÉES_{tag}"
    lab.catalog.create_recipient(f"KELVIN_{tag}")
    with pytest.raises(AlreadyExistsError):
        lab.catalog.create_recipient(f"\u212aelvin_{tag}")
    lab.catalog.add_table_to_share(f"DONNÉES_{tag}", "lab.retail.plain", alias="École.plain")
    with pytest.raises(AlreadyExistsError):
        lab.catalog.add_table_to_share(f"DONNÉES_{tag}", "lab.retail.sales", alias="ÉCOLE.PLAIN")


def test_other_spellings_read_the_granted_share_only(lab: SharingLab) -> None:
    """A recipient granted ``DONNÉES_x`` reads it under any spelling of the rule, and a share whose
    name only collides because an older catalog allowed it is never reached through the grant."""
    tag = uuid.uuid4().hex[:6]
    granted, other = f"DONNÉES_{tag}", f"données_{tag}"
    lab.catalog.create_share(granted)
    lab.catalog.add_table_to_share(granted, "lab.retail.plain", alias="d.t")
    who = lab.unique("uni")
    lab.add_recipient(who, shares=(granted,))
    # an older catalog could hold a colliding share (created before the rule): insert it directly
    with lab.catalog.db.transaction() as conn:
        conn.execute(
            "INSERT INTO shares (id, name, comment, created_at) VALUES (?, ?, NULL, ?)",
            (str(uuid.uuid4()), other, clock.now()),
        )
    lab.catalog.add_table_to_share(other, "lab.retail.sales", alias="d.t")  # exact spelling: found
    # the official client, through the granted spelling: the plain table (10 rows, column k)
    frame = delta_sharing.load_as_pandas(lab.url(who, granted, "d", "t"))
    assert list(frame.columns)[:1] == ["k"] and len(frame) == 10
    # the colliding share's spelling is not a way into the other share: under the one rule it names
    # the granted share, whose table (plain, not the other share's sales) is what is read
    frame = delta_sharing.load_as_pandas(lab.url(who, other, "d", "t"))
    assert list(frame.columns)[:1] == ["k"] and len(frame) == 10
    # and a recipient granted nothing sees nothing under any spelling
    nobody = lab.unique("nobody")
    lab.add_recipient(nobody, shares=())
    for spelling in (granted, other):
        with pytest.raises(requests.HTTPError) as info:
            delta_sharing.load_as_pandas(lab.url(nobody, spelling, "d", "t"))
        assert info.value.response.status_code == 404
    # a spelling that only the Unicode rule folds (decomposed é, upper case) reaches the granted one
    frame = delta_sharing.load_as_pandas(lab.url(who, f"DONNE\u0301ES_{tag}".upper(), "D", "T"))
    assert len(frame) == 10


def test_kelvin_sign_is_the_same_name(lab: SharingLab) -> None:
    tag = uuid.uuid4().hex[:6]
    share = f"KPI_{tag}"
    lab.catalog.create_share(share)
    lab.catalog.add_table_to_share(share, "lab.retail.plain", alias="k.t")
    who = lab.unique("kelvin")
    lab.add_recipient(who, shares=(share,))
    kelvin = f"\u212aPI_{tag}"
    frame = delta_sharing.load_as_pandas(lab.url(who, kelvin, "k", "t"))
    assert len(frame) == 10
    client = delta_sharing.SharingClient(str(lab.profiles[who]))
    assert [s.name for s in client.list_shares()] == [share]
    with pytest.raises(AlreadyExistsError):
        lab.catalog.create_share(kelvin)
