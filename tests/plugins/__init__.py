"""A third-party exporter plugin (historyfs_testplugin/) and the fixture that installs it."""
