"""Consumer checkpoints: the table versions a recipient has seen, in a small JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

from helpers.exceptions import InvalidArgumentError


def remember_versions(
    checkpoint_path: str | os.PathLike[str], versions: dict[str, int], *, overwrite: bool = False
) -> dict[str, int]:
    """Record the table versions a recipient has seen, in a small JSON file (a consumer checkpoint).

    A recipient that follows a change data feed needs to remember where it stopped, like a streaming
    query's checkpoint. By default only tables without an entry are recorded (the version at which the
    recipient first saw the table), so re-running a notebook does not move the checkpoint.

    :param versions: ``share.schema.table`` → version.
    :param overwrite: replace existing entries too.
    :return: the whole checkpoint after the update.
    """
    path = Path(checkpoint_path).expanduser()
    current = _read_checkpoint(path)
    for name, version in versions.items():
        if overwrite or name not in current:
            current[name] = int(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return current


def remembered_version(checkpoint_path: str | os.PathLike[str], name: str) -> int | None:
    """The version recorded for ``share.schema.table`` by :func:`remember_versions` (None if none)."""
    return _read_checkpoint(Path(checkpoint_path).expanduser()).get(name)


def _read_checkpoint(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise InvalidArgumentError(
            f"checkpoint {path} is not JSON ({exc}); delete it to start again"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidArgumentError(
            f"checkpoint {path} is not a JSON object; delete it to start again"
        )
    return {str(k): int(v) for k, v in data.items()}
