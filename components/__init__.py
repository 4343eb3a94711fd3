"""virtfleet: a virtualization estate as code.

Imports flow one way (pyproject.toml [tool.importlinter], tests/test_layers.py):

- ``model``: the validated configuration (pure);
- ``render``, ``osfamily``: one Jinja2 environment with its quoting filters; the el7/el9 table;
- ``remote``: the one way a script reaches a machine (rendered steps, the Command/CopyToRemote
  pair, SSH connections, files recorded for the plan);
- ``stack``: the stack's configuration and secrets, read from the Pulumi runtime;
- ``hosts`` and ``lb``: hypervisor hosts and their bridges; the HAProxy tier;
- ``guests``: one component per guest type;
- ``program``: model in, components out, stack outputs.
"""
