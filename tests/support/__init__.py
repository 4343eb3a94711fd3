"""Shared test support: real-tool gating, the loopback sshd, network labs, CLI fakes."""
