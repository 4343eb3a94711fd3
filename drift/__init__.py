"""``make drift``: is the estate what the stack says? A read-only check of every machine.

The stack is validated and its program run under the plan's mocks (as ``make plan`` does), so each
remote step's create script and files are exactly what a deploy would send now. Each step then runs
over SSH in its check mode (``_frame.sh.j2``: every action it would take is printed as
``would: WHAT (WHY)`` instead, nothing on the machine changes), in deploy order on each machine,
machines in parallel. Resources with a provider (libvirt, Docker) are read by the engine's
read-only refresh where the engine and the stack's state are at hand.
"""
