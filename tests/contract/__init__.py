"""Contract suites: behaviour shared by every implementation of an interface."""
