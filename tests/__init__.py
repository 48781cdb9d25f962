"""pyftps test suite (a package so that ``tests.support`` helpers import from every test directory)."""
