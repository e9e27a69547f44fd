"""The learner's workspace: copies of the notebooks and lab exercises that JupyterLab opens on.

Learners edit (and JupyterLab autosaves) these copies, never the tracked files of the repository. The
workspace is ``$SHARELAB_WORK`` or ``<repository>/work`` (git-ignored); :func:`prepare` copies what is
missing on every start (a learner's edits stay; a notebook new in the repository shows up), and
:func:`reset` puts one copy back as shipped. The lab solutions (``labs/solutions``) are not copied.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from helpers.exceptions import NotFoundError

REPO_ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("notebooks", "labs")


def work_dir(work: str | os.PathLike[str] | None = None) -> Path:
    """The workspace directory: ``work``, else ``$SHARELAB_WORK``, else ``<repository>/work``."""
    chosen = work or os.environ.get("SHARELAB_WORK") or REPO_ROOT / "work"
    return Path(chosen).expanduser().resolve()


def shipped(source: Path = REPO_ROOT) -> list[Path]:
    """The files a workspace holds, relative to ``source``: ``notebooks/*.ipynb`` and ``labs/*.ipynb``."""
    return sorted(
        p.relative_to(source) for folder in FOLDERS for p in (source / folder).glob("*.ipynb")
    )


def prepare(work: str | os.PathLike[str] | None = None, source: Path = REPO_ROOT) -> Path:
    """Copy every shipped notebook missing from the workspace into it; return the workspace."""
    root = work_dir(work)
    for rel in shipped(source):
        target = root / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, target)
    return root


def reset(name: str, work: str | os.PathLike[str] | None = None, source: Path = REPO_ROOT) -> Path:
    """Restore the learner's copy matching ``name`` (``lab1``, ``03``, ``labs/lab1_provider.ipynb``...).

    :raises NotFoundError: when ``name`` matches no shipped notebook, or more than one.
    """
    root = work_dir(work)
    files = shipped(source)
    key = name.strip().removesuffix(".ipynb")
    matches = [r for r in files if str(r).removesuffix(".ipynb") == key] or [
        r for r in files if r.name.startswith(Path(key).name)
    ]
    if len(matches) != 1:
        names = ", ".join(r.stem for r in files)
        what = "matches no notebook" if not matches else "matches several notebooks"
        raise NotFoundError(f"'{name}' {what}; name one of: {names}")
    rel = matches[0]
    target = root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / rel, target)
    return target
