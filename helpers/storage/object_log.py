"""Reader of the ``_delta_log`` of a table on S3-compatible object storage (``s3://bucket/prefix``)."""

from __future__ import annotations

import io
import time
from urllib.parse import unquote, urlparse

from helpers.exceptions import NotADeltaTableError
from helpers.storage.actions import DeltaLogError, classify_log_names
from helpers.storage.local_log import DeltaLog
from helpers.storage.s3 import S3Settings, split_s3_uri

__all__ = ["ObjectStoreDeltaLog", "has_delta_log"]


class ObjectStoreDeltaLog(DeltaLog):
    """Reader of the ``_delta_log`` of a table on S3-compatible storage (``s3://bucket/prefix``).

    The log is listed and read through :class:`pyarrow.fs.S3FileSystem` with the settings of
    :class:`helpers.storage.s3.S3Settings` (the process environment, like ``deltalake``). An object store
    has no directory inode or cheap ``stat``: the listing is re-read at most every
    ``_LIST_TTL_SECONDS``, and a table rewritten in place is detected by its oldest log file changing.

    :param location: ``s3://bucket/path/to/table``.
    :param settings: the store settings (default: from the environment).
    """

    is_object_store = True
    _LIST_TTL_SECONDS = 1.0

    def __init__(self, location: str, settings: S3Settings | None = None) -> None:
        super().__init__("file:///")  # the local fields; replaced below
        self.location = location
        self.bucket, self.prefix = split_s3_uri(location)
        self.settings = settings if settings is not None else S3Settings.from_env()
        self.fs = self.settings.filesystem()
        self.root = f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
        self.log_dir = f"{self.root}/_delta_log"
        self._listed_at = -1.0
        self._mtimes: dict[str, int] = {}

    def _commit_path(self, version: int) -> str:
        return f"{self.log_dir}/{version:020d}.json"

    def _refresh(self) -> None:
        from pyarrow import fs as pafs

        now = time.monotonic()
        if self._latest >= 0 and now - self._listed_at < self._LIST_TTL_SECONDS:
            return
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.log_dir, allow_not_found=True))
        except OSError as exc:
            raise DeltaLogError(
                f"Cannot list {self.location}/_delta_log on the object store ({exc}); check "
                "AWS_ENDPOINT_URL and the credentials in the server's environment"
            ) from None
        mtimes: dict[str, int] = {}
        names: list[str] = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            names.append(info.base_name)
            mtimes[info.path] = int(info.mtime.timestamp() * 1000) if info.mtime else 0
        commits, checkpoints = classify_log_names(names)
        if not commits and not checkpoints:
            raise NotADeltaTableError(
                f"{self.location} is not a Delta table (no _delta_log objects); write the table "
                "there first or register the right s3:// path"
            )
        oldest = self._oldest_log_file(commits, checkpoints)
        first = (hash(oldest), mtimes.get(oldest, 0)) if oldest else None
        self._mtimes = mtimes
        self._adopt_listing(
            first,
            commits,
            checkpoints,
            f"{self.location} has no complete commit in _delta_log; write the table again",
        )
        self._listed_at = now

    def _read_bytes(self, path: str) -> bytes:
        try:
            with self.fs.open_input_stream(path) as fh:
                return fh.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if "not exist" in str(exc).lower() or "NoSuchKey" in str(exc):
                raise FileNotFoundError(path) from None
            raise DeltaLogError(f"Cannot read {path} from the object store: {exc}") from None

    def _mtime_ms(self, path: str) -> int:
        return self._mtimes.get(path, 0)

    def _raw_timestamp(self, version: int) -> int:
        with self._lock:
            cached = self._raw_ts.get(version)
        if cached is not None:
            return cached
        self.commit(version)  # one GET: parses the commit and records its timestamp
        with self._lock:
            return self._raw_ts.get(version, 0)

    def _checkpoint_source(self, name: str) -> io.BytesIO:
        return io.BytesIO(self._read_bytes(f"{self.log_dir}/{name}"))

    def object_key(self, raw_path: str) -> tuple[str, str]:
        """(bucket, key) of a log-relative (URL-encoded) data file path.

        :raises DeltaLogError: when the path leaves the table's prefix.
        """
        parsed = urlparse(raw_path)
        if parsed.scheme:
            if parsed.scheme.lower() not in ("s3", "s3a") or parsed.netloc != self.bucket:
                raise DeltaLogError("A file of this table lies outside the table directory")
            key = unquote(parsed.path).lstrip("/")
        else:
            rel = unquote(raw_path)
            key = f"{self.prefix}/{rel.lstrip('/')}" if self.prefix else rel.lstrip("/")
        parts = key.split("/")
        inside = not self.prefix or key.startswith(self.prefix + "/")
        if not inside or ".." in parts or "." in parts:
            raise DeltaLogError("A file of this table lies outside the table directory")
        return self.bucket, key

    def file_path(self, raw_path: str) -> str:
        """Object-store files have no local path: the server hands out pre-signed URLs instead."""
        raise DeltaLogError("A file of an object-store table has no local path")


def has_delta_log(location: str, settings: S3Settings | None = None) -> bool:
    """True when the ``s3://`` location holds a ``_delta_log`` with at least one commit or checkpoint."""
    try:
        ObjectStoreDeltaLog(location, settings)._refresh()
    except NotADeltaTableError:
        return False
    return True
