"""Shared fixtures live in tests/fixtures/ (one module per service), loaded here as plugins."""

pytest_plugins = [
    "tests.fixtures.fake_api",
    "tests.fixtures.s3",
    "tests.fixtures.ftp",
    "tests.fixtures.mount",
    "tests.plugins.install",
]
