"""virtfleet's Pulumi program: wiring only (see components/program.py)."""

from components.program import main

main()
