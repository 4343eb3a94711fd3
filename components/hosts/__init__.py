"""Hypervisor hosts: ``HypervisorHost`` prepares one host for its roles."""

from .host import HypervisorHost

__all__ = ["HypervisorHost"]
