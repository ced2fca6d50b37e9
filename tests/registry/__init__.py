# tests/registry/ holds the tests of pyk8s/registry; `from tests.registry import registry`
# also gives the session's local image registry fixture (tests/localregistry.py).
from tests.localregistry import LocalRegistry, registry  # noqa: F401
