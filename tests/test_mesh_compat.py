"""Schema contracts: BACKWARD / FORWARD / FULL on concrete schema pairs, and publishing under them after
the provider really evolves a Delta table (schema merge, overwrite)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from helpers.catalog import open_catalog
from helpers.exceptions import InvalidArgumentError, SchemaCompatibilityError
from helpers.mesh import Mesh, compare_schemas


def schema(*fields: tuple[str, object, bool]) -> dict:
    return {
        "type": "struct",
        "fields": [
            {"name": n, "type": t, "nullable": null, "metadata": {}} for n, t, null in fields
        ],
    }


BASE = schema(("id", "long", False), ("amount", "double", True), ("day", "date", True))


@pytest.mark.parametrize(
    ("new", "level", "kind"),
    [
        (BASE, "FULL", None),
        (
            schema(
                *[(f["name"], f["type"], f["nullable"]) for f in BASE["fields"]],
                ("note", "string", True),
            ),
            "FULL",
            "add_column",
        ),
        (
            schema(
                *[(f["name"], f["type"], f["nullable"]) for f in BASE["fields"]],
                ("note", "string", False),
            ),
            "FORWARD",
            "add_required_column",
        ),
        (schema(("id", "long", False), ("day", "date", True)), "BACKWARD", "drop_column"),
        (
            schema(("id", "integer", False), ("amount", "double", True), ("day", "date", True)),
            "FORWARD",
            "narrow_type",
        ),
        (
            schema(("id", "long", False), ("amount", "float", True), ("day", "date", True)),
            "FORWARD",
            "narrow_type",
        ),
        (
            schema(
                ("id", "long", False), ("amount", "double", True), ("day", "timestamp_ntz", True)
            ),
            "BACKWARD",
            "widen_type",
        ),
        (
            schema(("id", "string", False), ("amount", "double", True), ("day", "date", True)),
            "NONE",
            "change_type",
        ),
        (
            schema(("id", "long", True), ("amount", "double", True), ("day", "date", True)),
            "BACKWARD",
            "make_nullable",
        ),
        (
            schema(("id", "long", False), ("amount", "double", False), ("day", "date", True)),
            "FORWARD",
            "make_required",
        ),
        # case-insensitive names: a re-cased column is the same column
        (
            schema(("ID", "long", False), ("amount", "double", True), ("day", "date", True)),
            "FULL",
            None,
        ),
    ],
)
def test_compatibility_classes_on_concrete_pairs(new: dict, level: str, kind: str | None) -> None:
    result = compare_schemas(BASE, new, "t")
    assert result.level == level
    assert [c.kind for c in result.changes] == ([kind] if kind else [])
    assert result.compatible("FULL") == (level == "FULL")
    assert result.compatible("BACKWARD") == (level in ("FULL", "BACKWARD"))
    assert result.compatible("FORWARD") == (level in ("FULL", "FORWARD"))
    assert result.compatible("NONE")


def test_nested_and_decimal_changes() -> None:
    old = schema(
        ("price", "decimal(10,2)", True),
        ("tags", {"type": "array", "elementType": "integer", "containsNull": True}, True),
    )
    wider = schema(
        ("price", "decimal(12,3)", True),
        ("tags", {"type": "array", "elementType": "long", "containsNull": True}, True),
    )
    result = compare_schemas(old, wider)
    assert [(c.path, c.kind) for c in result.changes] == [
        ("price", "widen_type"),
        ("tags[]", "widen_type"),
    ]
    assert result.level == "BACKWARD"
    lost_scale = schema(("price", "decimal(12,1)", True), ("tags", old["fields"][1]["type"], True))
    assert compare_schemas(old, lost_scale).level == "NONE"  # neither decimal holds the other
    struct_old = schema(
        (
            "addr",
            {
                "type": "struct",
                "fields": [{"name": "city", "type": "string", "nullable": True, "metadata": {}}],
            },
            True,
        )
    )
    struct_new = schema(
        (
            "addr",
            {
                "type": "struct",
                "fields": [
                    {"name": "city", "type": "string", "nullable": True, "metadata": {}},
                    {"name": "zip", "type": "string", "nullable": True, "metadata": {}},
                ],
            },
            True,
        )
    )
    nested = compare_schemas(struct_old, struct_new)
    assert [(c.path, c.kind) for c in nested.changes] == [
        ("addr.zip", "add_column")
    ] and nested.full
    assert compare_schemas(struct_new, struct_old).level == "BACKWARD"


def test_pyarrow_and_delta_schemas_are_accepted(tmp_path: Path) -> None:
    write_deltalake(str(tmp_path / "t"), pd.DataFrame({"a": [1], "b": ["x"]}))
    delta_schema = DeltaTable(str(tmp_path / "t")).schema()
    arrow = pa.schema([("a", pa.int64()), ("b", pa.string()), ("c", pa.float64())])
    result = compare_schemas(delta_schema, arrow)
    assert [c.kind for c in result.changes] == ["add_column"] and result.full
    with pytest.raises(InvalidArgumentError, match="cannot read a schema"):
        compare_schemas(42, arrow)


@pytest.fixture
def evolving(lab_home: Path) -> tuple[Mesh, Path]:
    cat = open_catalog(lab_home)
    loc = lab_home / "data" / "airline" / "ops" / "routes"
    write_deltalake(
        str(loc),
        pd.DataFrame(
            {"route_id": [1, 2, 3], "origin": ["JFK", "SFO", "ORD"], "miles": [2475, 1846, 740]}
        ),
    )
    cat.register_table("airline.ops.routes", str(loc))
    cat.create_share("routes_share")
    cat.add_table_to_share("routes_share", "airline.ops.routes")
    mesh = Mesh(lab_home)
    mesh.register_domain("network", "net-team", description="Route network")
    mesh.create_product(
        "routes", domain="network", share="routes_share", owner="dan", description="Routes flown"
    )
    return mesh, loc


def test_publishing_follows_the_schema_contract(evolving: tuple[Mesh, Path]) -> None:
    mesh, loc = evolving
    v1 = mesh.publish("routes")
    assert v1.version == "1.0.0" and v1.columns("ops.routes") == ["route_id", "origin", "miles"]
    assert v1.table_versions == {"ops.routes": 0}
    assert mesh.publish("routes").version == "1.0.1"  # nothing changed: patch

    # the provider adds a nullable column with schema merge: FULL compatible -> next minor
    write_deltalake(
        str(loc),
        pd.DataFrame({"route_id": [4], "origin": ["BOS"], "miles": [187], "aircraft": ["A320"]}),
        mode="append",
        schema_mode="merge",
    )
    compat = mesh.check_compatibility("routes")["ops.routes"]
    assert compat.level == "FULL" and [c.kind for c in compat.changes] == ["add_column"]
    v2 = mesh.publish("routes")
    assert v2.version == "1.1.0"
    assert v2.columns("ops.routes")[-1] == "aircraft" and v2.table_versions == {"ops.routes": 1}
    assert v2.changes["ops.routes"][0]["kind"] == "add_column"

    # the provider drops a column (overwrite with a new schema): breaking under FULL
    write_deltalake(
        str(loc),
        pd.DataFrame({"route_id": [1], "origin": ["JFK"], "aircraft": ["B737"]}),
        mode="overwrite",
        schema_mode="overwrite",
    )
    with pytest.raises(
        SchemaCompatibilityError, match=r"drop_column miles .*publish it as version '2.0.0'"
    ):
        mesh.publish("routes")
    with pytest.raises(SchemaCompatibilityError, match="needs a new major version, e.g. '2.0.0'"):
        mesh.publish("routes", "1.2.0")
    with pytest.raises(InvalidArgumentError, match="must be greater than the latest"):
        mesh.publish("routes", "1.0.5")
    assert [v.version for v in mesh.versions("routes")] == ["1.0.0", "1.0.1", "1.1.0"]
    v3 = mesh.publish("routes", "2.0.0")
    # the new major is served under its own alias; the old alias stays at 1.1.0's Delta version
    assert v3.major == 2 and "miles" not in v3.columns("ops.routes_v2")
    assert v3.table_versions == {"ops.routes_v2": 2} and "ops.routes" not in v3.schemas
    assert mesh.output_tables("routes") == {"ops.routes_v2": str(loc.resolve())}
    pins = {t.name: t.pinned_version for t in mesh.catalog.shared_tables("routes_share")}
    assert pins == {"routes": 1, "routes_v2": 2}
    assert mesh.publish("routes").version == "2.0.1"  # the contract now holds against routes_v2
    mesh.retire_alias("routes", "ops.routes")
    assert [t.name for t in mesh.catalog.shared_tables("routes_share")] == ["routes_v2"]
    with pytest.raises(InvalidArgumentError, match="is an output table"):
        mesh.retire_alias("routes", "ops.routes_v2")


def test_a_major_version_can_move_the_alias_itself(evolving: tuple[Mesh, Path]) -> None:
    mesh, loc = evolving
    mesh.publish("routes")
    write_deltalake(
        str(loc),
        pd.DataFrame({"route_id": [1], "origin": ["JFK"]}),
        mode="overwrite",
        schema_mode="overwrite",
    )
    v2 = mesh.publish("routes", "2.0.0", major_alias=False)
    assert v2.table_versions == {"ops.routes": 1} and v2.columns("ops.routes") == [
        "route_id",
        "origin",
    ]
    assert [(t.name, t.pinned_version) for t in mesh.catalog.shared_tables("routes_share")] == [
        ("routes", 1)
    ]


def test_contract_mode_decides_what_breaks(evolving: tuple[Mesh, Path]) -> None:
    mesh, loc = evolving
    mesh.publish("routes")
    # widen miles long -> double (overwrite): BACKWARD only
    write_deltalake(
        str(loc),
        pd.DataFrame({"route_id": [1], "origin": ["JFK"], "miles": [2475.5]}),
        mode="overwrite",
        schema_mode="overwrite",
    )
    assert (
        mesh.check_compatibility("routes")["ops.routes"].level == "NONE"
    )  # long -> double loses precision
    mesh.update_product("routes", compatibility="NONE")
    assert mesh.publish("routes").version == "1.1.0"
    # narrowing double -> float is FORWARD: allowed under FORWARD, refused under BACKWARD
    write_deltalake(
        str(loc),
        pa.table(
            {
                "route_id": pa.array([1], pa.int64()),
                "origin": ["JFK"],
                "miles": pa.array([1.5], pa.float32()),
            }
        ),
        mode="overwrite",
        schema_mode="overwrite",
    )
    assert mesh.check_compatibility("routes")["ops.routes"].level == "FORWARD"
    mesh.update_product("routes", compatibility="BACKWARD")
    with pytest.raises(SchemaCompatibilityError, match="narrow_type miles"):
        mesh.publish("routes")
    mesh.update_product("routes", compatibility="FORWARD")
    assert mesh.publish("routes").version == "1.2.0"
