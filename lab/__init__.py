"""The lab: a committed stack deployed for real on this machine (``make lab``), and the L5 tests' lab.

``core.Lab`` builds it, ``view`` is one machine (namespace + throwaway view + real daemons),
``stack`` derives the lab's stack from a committed one, ``images`` makes what the guests run.
"""
