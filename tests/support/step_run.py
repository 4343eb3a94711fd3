"""Running a recorded step's exact command over a ``LoopbackSshd`` and reading its report."""

from __future__ import annotations

from dataclasses import dataclass

from .sshd import LoopbackSshd


@dataclass(frozen=True)
class Result:
    code: int
    out: list[str]
    err: str

    @property
    def last(self) -> str:
        return self.out[-1] if self.out else ""

    @property
    def changes(self) -> list[str]:
        """The ``changed: …`` lines the frame's vf_mark_changed printed."""
        return [line for line in self.out if line.startswith("changed:")]

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n" + "\n".join(self.out) + f"\n--- stderr ---\n{self.err}"


def run(sshd: LoopbackSshd, command: str, stdin: str | None = None) -> Result:
    """``command`` as pulumi-command sends it (``stdin``: a secret step's script)."""
    proc = sshd.run(command, timeout=120, input=stdin)
    return Result(proc.returncode, proc.stdout.strip().splitlines(), proc.stderr)
