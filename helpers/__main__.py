"""``python -m helpers`` is the ``sharelab`` command."""

from helpers.cli import main

raise SystemExit(main())
