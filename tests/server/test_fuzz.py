"""A bounded fuzz run against the real server: malformed input of any shape is a 4xx, never a 5xx.

Fixed seed, a few thousand cases spread over every endpoint: wrong types in every body field and query
parameter, deep-nested and invalid JSON, odd names in the path, odd headers, tokens and signatures. The
server must answer each with a status < 500 and the protocol's JSON error shape, and be healthy after.
"""

from __future__ import annotations

import http.client
import json
import random
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import requests

from tests.server.minilab import running_minilab

SEED = 20261201
CASES = 4000
PREFIX = "/delta-sharing"

_TABLES = [
    ("retail", "core", "sales"),
    ("retail", "core", "events"),
    ("retail", "other", "plain"),
    ("regional", "regional", "sales"),
]
_BODY_KEYS = [
    "predicateHints",
    "jsonPredicateHints",
    "limitHint",
    "version",
    "timestamp",
    "startingVersion",
    "endingVersion",
    "includeHistoricalProtocol",
    "maxFiles",
    "pageToken",
    "includeRefreshToken",
    "refreshToken",
    "idempotencyKey",
    "unknownField",
]
_QUERY_KEYS = [
    "maxResults",
    "pageToken",
    "startingVersion",
    "startingTimestamp",
    "endingVersion",
    "endingTimestamp",
    "includeHistoricalMetadata",
    "includeHistoricalProtocol",
    "maxFiles",
    "version",
    "timestamp",
]


def _deep(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


def _value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value of a random type (numbers huge and small, odd strings, nesting)."""
    choice = rng.randrange(22)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randint(-5, 12)
    if choice == 3:
        return rng.choice(
            [2**31, 2**63, -(2**63) - 1, 10**30, 10**400 if rng.random() < 0.5 else 0]
        )
    if choice == 4:
        return rng.choice([1.5, -0.0, 1e308, -1e308, 3.0, float("nan"), float("inf")])
    if choice == 5:
        return rng.choice(["", " ", "3", "-1", "x3", "true", "TRUE", "null", "0x10", "1e3"])
    if choice == 6:
        return rng.choice(
            [
                "2024-01-01T00:00:00Z",
                "2024-01-01",
                "9999-12-31T23:59:59Z",
                "0001-01-01T00:00:00Z",
                "2024-13-45T99:99:99Z",
                "1715988468.0",
            ]
        )
    if choice == 7:
        return "".join(
            chr(rng.choice([0, 1, 0x7F, 0xE9, 0x212A, 0xFFFF, 0x1F600, 0xD800 + rng.randrange(2)]))
            for _ in range(rng.randint(1, 8))
        )
    if choice == 8:
        return "A" * rng.choice([256, 5000, 70000])
    if choice == 9 and depth < 3:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if choice == 10 and depth < 3:
        return {
            rng.choice(["op", "children", "name", "value", "valueType", "x"]): _value(
                rng, depth + 1
            )
            for _ in range(rng.randint(0, 4))
        }
    if choice == 11:
        return _deep(rng.choice([50, 500, 900]), rng.choice(["list", "dict"]))
    if choice == 12:  # a plausible json predicate, maybe broken
        return json.dumps(
            {
                "op": rng.choice(["equal", "lessThan", "and", "not", "isNull", "bogus"]),
                "children": [
                    {"op": "column", "name": "region", "valueType": "string"},
                    {
                        "op": "literal",
                        "value": rng.choice(["emea", 3]),
                        "valueType": rng.choice(["string", "int", "date", "x"]),
                    },
                ],
            }
        )
    if choice == 13:
        return [
            rng.choice(
                [
                    "region = 'emea'",
                    "id > 3",
                    "day = '2024-01-05'",
                    "((((",
                    "a = 'b' OR",
                    "region IN ('a')",
                    "1 = 1",
                    "NOT region <> 'x'",
                    "'\u0000'",
                ]
            )
            for _ in range(rng.randint(0, 3))
        ]
    if choice == 14:
        n = rng.choice([150, 3000])
        return '{"a":' * n + "1" + "}" * n
    return rng.choice([0, 1, 2, 3, "0", "1", "abc", "pageToken.abc", "e30.00", [], {}])


def _name(rng: random.Random, good: str) -> str:
    choice = rng.randrange(14)
    if choice < 7:
        return good
    return rng.choice(
        [
            good.upper(),
            good + "x",
            "%00",
            "%2e%2e",
            "..",
            "%2F",
            "a%20b",
            "DONN%C3%89ES",
            "%E2%84%AA",
            "A" * 300,
            "%ED%A0%80",
            "%FF%FE",
            "%25",
            "%C3%A9",
        ]
    )


def _headers(rng: random.Random, token: str) -> dict[str, str]:
    h: dict[str, str] = {}
    auth = rng.randrange(12)
    if auth < 8:
        h["Authorization"] = f"Bearer {token}"
    elif auth == 8:
        h["Authorization"] = rng.choice(
            [
                "Bearer",
                "Basic abc",
                "Bearer  ",
                "bearer " + token.upper(),
                "Bearer " + "x" * 5000,
                "Bearer dss_\u00e9",
            ]
        )
    elif auth == 9:
        h["Authorization"] = f"Bearer {token[:-1]}{'A' if token[-1] != 'A' else 'B'}"
    if rng.random() < 0.4:
        h["delta-sharing-capabilities"] = rng.choice(
            [
                "responseformat=delta",
                "responseformat=parquet,delta",
                "responseformat=bogus",
                "responseformat=delta;readerfeatures=deletionvectors,columnmapping,timestampntz",
                "includeendstreamaction=true",
                ";;==;,",
                "responseformat",
                "responseformat=DELTA",
                "asyncquery=true;includeendstreamaction=true;responseformat=delta",
                "x" * 4000,
            ]
        )
    if rng.random() < 0.1:
        h["fileidhash"] = rng.choice(["parquet", "delta", "md5", "", "DELTA"])
    if rng.random() < 0.1:
        h["Content-Type"] = rng.choice(["text/plain", "application/json; charset=latin-1", "x/y"])
    return h


def _case(
    rng: random.Random, token: str, extras: dict[str, str]
) -> tuple[str, str, dict[str, str], bytes | None]:
    share, schema, table = rng.choice(_TABLES)
    s, c, t = _name(rng, share), _name(rng, schema), _name(rng, table)
    tpath = f"{PREFIX}/shares/{s}/schemas/{c}/tables/{t}"
    kind = rng.randrange(14)
    params = {k: _value(rng) for k in rng.sample(_QUERY_KEYS, rng.randint(0, 4))}
    qs = urlencode(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()},
        encoding="utf-8",
        errors="surrogatepass",
    )
    body: bytes | None = None
    method = "GET"
    if kind == 0:
        path = f"{PREFIX}/shares"
    elif kind == 1:
        path = f"{PREFIX}/shares/{s}"
    elif kind == 2:
        path = f"{PREFIX}/shares/{s}/schemas"
    elif kind == 3:
        path = f"{PREFIX}/shares/{s}/schemas/{c}/tables"
    elif kind == 4:
        path = f"{PREFIX}/shares/{s}/all-tables"
    elif kind == 5:
        path = tpath + "/version"
    elif kind == 6:
        path = tpath + "/metadata"
    elif kind in (7, 8, 9):
        method, path = "POST", tpath + "/query"
        shape = rng.randrange(10)
        if shape == 0:
            body = rng.choice(
                [
                    b"",
                    b"{",
                    b"[]",
                    b"null",
                    b"1",
                    b'"x"',
                    b"\xff\xfe",
                    b"{}" * 3,
                    b'{"a":' * 2000,
                    b"[" * 100000,
                    b'{"limitHint":' + b"[" * 3000 + b"]" * 3000 + b"}",
                    b'{"pageToken":' + b'{"a":' * 1500 + b"1" + b"}" * 1501,
                    b'{"version": NaN}',
                    b'{"limitHint": 1e999}',
                ]
            )
        else:
            obj = {k: _value(rng) for k in rng.sample(_BODY_KEYS, rng.randint(1, 5))}
            body = json.dumps(obj).encode("utf-8", "surrogatepass")
    elif kind == 10:
        path = tpath + "/changes"
    elif kind == 11:
        method, path = "HEAD", tpath
    elif kind == 12:
        path = rng.choice(
            [
                extras["file"],
                extras["file"].replace("exp=", "exp=1"),
                extras["file"][:-3],
                extras["file"] + "&rcp=bob",
                f"{PREFIX}/files/{rng.choice(['x', 'a.b', '..', '%00', 'A' * 4000])}?exp=x",
            ]
        )
        qs = ""
    else:
        path = f"{PREFIX}/activation/{rng.choice(['x', '', 'A' * 600, '%00', quote(chr(0x212A))])}"
    if rng.random() < 0.03:
        method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS"])
    if qs and kind != 12:
        path = f"{path}?{qs}"
    return method, path, _headers(rng, token), body


def _request(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes | None,
) -> tuple[int, bytes, str]:
    enc = {k: v.encode("utf-8", "surrogatepass").decode("latin-1") for k, v in headers.items()}
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in enc.items():
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, data, resp.getheader("Content-Type") or ""


def test_fuzz_every_endpoint_never_5xx(tmp_path: Path) -> None:
    env = {
        "SHARELAB_AUTH_FAILURE_BURST": "1000000"
    }  # the fuzz wants the handlers, not the throttle
    with running_minilab(tmp_path / "home", env=env) as lab:
        assert lab.server is not None
        token = lab.tokens["alice"]
        q = lab.query(f"{PREFIX}/shares/retail/schemas/core/tables/sales".removeprefix(PREFIX))
        first_file = json.loads(q.text.splitlines()[2])["file"]["url"]
        extras = {"file": first_file.split(str(lab.server.port), 1)[1]}
        rng = random.Random(SEED)
        conn = http.client.HTTPConnection("127.0.0.1", lab.server.port, timeout=30)
        started = time.monotonic()
        statuses: dict[int, int] = {}
        failures: list[str] = []
        for i in range(CASES):
            method, path, headers, body = _case(rng, token, extras)
            try:
                status, data, ctype = _request(conn, method, path, headers, body)
            except (
                http.client.HTTPException,
                OSError,
            ) as exc:  # the server closed (413, 400 from h11)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", lab.server.port, timeout=30)
                statuses[-1] = statuses.get(-1, 0) + 1
                assert requests.get(f"{lab.server.url}/health", timeout=5).status_code == 200, (
                    f"case {i} {method} {path[:200]} killed the server: {exc}"
                )
                continue
            statuses[status] = statuses.get(status, 0) + 1
            if status >= 500:
                shown = {k: v[:80] for k, v in headers.items()}
                failures.append(
                    f"{status} {method} {path[:200]} {shown} {str(body)[:200]} -> {data[:300]!r}"
                )
            elif status >= 400 and method != "HEAD" and ctype.startswith("application/json"):
                err = json.loads(data)
                assert isinstance(err.get("errorCode"), str) and isinstance(err.get("message"), str)
        elapsed = time.monotonic() - started
        conn.close()
        assert not failures, f"{len(failures)} responses >= 500:\n" + "\n".join(failures[:20])
        assert elapsed < 60, f"the fuzz run took {elapsed:.0f} s"
        assert sum(statuses.values()) == CASES
        assert statuses.get(200, 0) > CASES // 20, statuses  # the fuzz reaches the handlers
        # healthy after: the official read path still works
        import delta_sharing

        frame = delta_sharing.load_as_pandas(lab.url("alice", "retail", "core", "sales"))
        assert len(frame) == 46
        assert requests.get(f"{lab.server.url}/health", timeout=5).json()["status"] == "ok"
        assert lab.server.process.poll() is None
        assert "internal error" not in lab.server.log(), "no unexpected exception was logged"
