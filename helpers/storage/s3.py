"""Tables on S3-compatible object storage: settings from the environment and pre-signed GET URLs.

A table registered at ``s3://bucket/prefix`` is read by the server through the object store, and its
data files are handed to recipients as the store's own pre-signed URLs (AWS Signature Version 4,
query-string authentication), so the bytes never pass through the lab server.

The settings are the variables ``deltalake`` itself reads, taken from the server's environment (never
stored in the catalog): ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, optional
``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``; default ``us-east-1``),
``AWS_ENDPOINT_URL`` (an S3-compatible store such as MinIO or moto; path-style URLs are then used) and
``AWS_ALLOW_HTTP`` (``true`` to allow an ``http://`` endpoint).

Pre-signing is pure Python (``hmac``/``hashlib``): botocore is not a dependency.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlparse

from helpers.exceptions import InvalidArgumentError

__all__ = [
    "S3Settings",
    "is_s3",
    "presign_get",
    "split_s3_uri",
]

MAX_EXPIRES_SECONDS = 7 * 24 * 3600  # the SigV4 limit for X-Amz-Expires


def is_s3(location: str) -> bool:
    """True for an ``s3://`` or ``s3a://`` location."""
    return location.lower().startswith(("s3://", "s3a://"))


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix without slashes at either end) of ``s3://bucket/prefix``.

    :raises InvalidArgumentError: when the URI has no bucket.
    """
    parsed = urlparse(uri)
    if parsed.scheme.lower() not in ("s3", "s3a") or not parsed.netloc:
        raise InvalidArgumentError(
            f"{uri!r} is not an S3 location; write it as s3://bucket/path/to/table"
        )
    return parsed.netloc, parsed.path.strip("/")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible store (from the environment, like ``deltalake``).

    :param access_key: ``AWS_ACCESS_KEY_ID``.
    :param secret_key: ``AWS_SECRET_ACCESS_KEY``.
    :param region: ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (default ``us-east-1``).
    :param endpoint_url: ``AWS_ENDPOINT_URL`` (empty for AWS itself).
    :param allow_http: ``AWS_ALLOW_HTTP``.
    :param session_token: ``AWS_SESSION_TOKEN`` (temporary credentials).
    """

    access_key: str
    secret_key: str
    region: str = "us-east-1"
    endpoint_url: str = ""
    allow_http: bool = False
    session_token: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """The settings of the process environment.

        :raises InvalidArgumentError: when the credentials are missing or the endpoint is plain HTTP
            without ``AWS_ALLOW_HTTP=true``.
        """
        env = os.environ if environ is None else environ
        access = env.get("AWS_ACCESS_KEY_ID", "")
        secret = env.get("AWS_SECRET_ACCESS_KEY", "")
        if not access or not secret:
            raise InvalidArgumentError(
                "S3 tables need credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and "
                "AWS_ENDPOINT_URL for an S3-compatible store) in the environment of the server"
            )
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        allow_http = _truthy(env.get("AWS_ALLOW_HTTP"))
        if endpoint.lower().startswith("http://") and not allow_http:
            raise InvalidArgumentError(
                f"AWS_ENDPOINT_URL {endpoint} is plain HTTP; set AWS_ALLOW_HTTP=true to allow it"
            )
        return cls(
            access_key=access,
            secret_key=secret,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint_url=endpoint.rstrip("/"),
            allow_http=allow_http,
            session_token=env.get("AWS_SESSION_TOKEN", ""),
        )

    def storage_options(self) -> dict[str, str]:
        """The same settings as ``deltalake`` storage options."""
        opts = {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }
        if self.endpoint_url:
            opts["AWS_ENDPOINT_URL"] = self.endpoint_url
        if self.allow_http:
            opts["AWS_ALLOW_HTTP"] = "true"
        if self.session_token:
            opts["AWS_SESSION_TOKEN"] = self.session_token
        return opts

    def filesystem(self) -> Any:
        """A :class:`pyarrow.fs.S3FileSystem` for these settings (built into the pyarrow wheel)."""
        from pyarrow import fs

        kwargs: dict[str, Any] = {
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "region": self.region,
        }
        if self.session_token:
            kwargs["session_token"] = self.session_token
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url)
            kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
            kwargs["scheme"] = parsed.scheme or "https"
        return fs.S3FileSystem(**kwargs)


def _uri_encode(text: str, *, keep_slash: bool) -> str:
    """SigV4 URI encoding: everything but ``A-Za-z0-9-_.~`` (and ``/`` in the object key)."""
    return quote(text, safe="-_.~/" if keep_slash else "-_.~")


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def presign_get(
    settings: S3Settings,
    bucket: str,
    key: str,
    *,
    expires_seconds: int = 3600,
    now: datetime | None = None,
) -> str:
    """A pre-signed ``GET`` URL of ``s3://bucket/key`` (AWS SigV4 query-string authentication).

    With an endpoint the URL is path-style (``{endpoint}/{bucket}/{key}``, what S3-compatible stores
    expect); without one it is AWS's virtual-hosted style. The URL is valid from ``now`` for
    ``expires_seconds`` seconds.

    :param key: the object key, not URL-encoded.
    :raises InvalidArgumentError: when ``expires_seconds`` is outside 1..604800.
    """
    if not 1 <= expires_seconds <= MAX_EXPIRES_SECONDS:
        raise InvalidArgumentError(
            f"pre-signed URLs live 1 to {MAX_EXPIRES_SECONDS} seconds, got {expires_seconds}"
        )
    when = (now or datetime.now(UTC)).astimezone(UTC)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    if settings.endpoint_url:
        parsed = urlparse(settings.endpoint_url)
        scheme, host = parsed.scheme or "https", parsed.netloc
        if (scheme, parsed.port) in (("http", 80), ("https", 443)):
            # clients send no default port in the Host header: sign what they send
            host = host.rsplit(":", 1)[0]
        base_path = parsed.path.rstrip("/")
        path = f"{base_path}/{bucket}/{key}"
    else:
        regional = "" if settings.region == "us-east-1" else f".{settings.region}"
        scheme, host = "https", f"{bucket}.s3{regional}.amazonaws.com"
        path = f"/{key}"
    canonical_uri = _uri_encode(path, keep_slash=True)
    scope = f"{day}/{settings.region}/s3/aws4_request"
    params = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{settings.access_key}/{scope}",
        "X-Amz-Date": amz_date,
        "X-Amz-Expires": str(int(expires_seconds)),
        "X-Amz-SignedHeaders": "host",
    }
    if settings.session_token:
        params["X-Amz-Security-Token"] = settings.session_token
    query = "&".join(
        f"{_uri_encode(k, keep_slash=False)}={_uri_encode(v, keep_slash=False)}"
        for k, v in sorted(params.items())
    )
    canonical_request = "\n".join(
        ["GET", canonical_uri, query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode("utf-8")).hexdigest(),
        ]
    )
    signing_key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{settings.secret_key}".encode(), day), settings.region), "s3"),
        "aws4_request",
    )
    signature = hmac.new(signing_key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{scheme}://{host}{canonical_uri}?{query}&X-Amz-Signature={signature}"
