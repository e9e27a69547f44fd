"""``%load_ext helpers.magic``: the ``%%sharelab`` cell magic (it lives in :mod:`helpers.provider.magic`)."""

from __future__ import annotations

from helpers.provider.magic import SharelabMagics, load_ipython_extension, provider_for

__all__ = ["SharelabMagics", "load_ipython_extension", "provider_for"]
