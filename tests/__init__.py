"""The sharelab test suite (a package, so its modules import helpers as ``from tests.support import ...``)."""
