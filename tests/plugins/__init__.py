"""Third-party destination plugins (historyfs_testplugin/, historyfs_tarball/) and the fixture that installs them."""
