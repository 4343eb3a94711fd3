"""Running a recorded step's exact command over a ``LoopbackSshd`` and reading its report."""

from __future__ import annotations

from dataclasses import dataclass

from components.guests.remote_guest import readback

from .sshd import LoopbackSshd


@dataclass(frozen=True)
class RecordedStep:
    """A remote step's Command as the program recorded it (``command:remote:Command`` inputs)."""

    machine: str
    name: str
    create: str
    delete: str
    stdin: str | None
    triggers: list
    replace_on_changes: list[str]
    delete_before_replace: bool

    @classmethod
    def of(cls, record, machine: str) -> RecordedStep:
        """From a recorded Command named ``<machine>-<step name>``."""
        return cls(
            machine, record.name.removeprefix(f"{machine}-"), record.inputs["create"], record.inputs["delete"],
            record.inputs.get("stdin"), record.inputs["triggers"], record.replace_on_changes,
            record.delete_before_replace,
        )  # fmt: skip

    def report(self, action: str, word: str) -> str:
        """The last line the step's frame prints."""
        return f"virtfleet: {self.machine}/{self.name} ({action}): {word}"


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


def ok(sshd: LoopbackSshd, command: str) -> str:
    """``command``'s stdout; a non-zero exit fails the test."""
    return sshd.run(command, check=True, timeout=120).stdout


def create(sshd: LoopbackSshd, step, word: str = "changed") -> Result:
    """Run a recorded step's create (``step.create``, ``step.stdin``) and require its last line to be
    the frame's report, ``step.report("create", word)``."""
    result = run(sshd, step.create, step.stdin)
    assert result.code == 0 and result.last == step.report("create", word), str(result)
    return result


def second_run_changes_nothing(sshd: LoopbackSshd, snapshot: str, run_again, state: dict, what: str) -> None:
    """The idempotence of a remote guest: ``run_again()`` (its create steps once more) reports
    ``unchanged`` with no ``changed:`` line, reads back ``state`` again, and leaves the output of the
    shell command ``snapshot`` (hashes of the fakes' state files, the guest's files) byte-identical."""
    before = ok(sshd, snapshot)
    second = run_again()
    assert not second.changes, str(second)
    assert readback("\n".join(second.out)) == state, str(second)
    assert ok(sshd, snapshot) == before, f"the second create changed {what} or the fakes' state"
