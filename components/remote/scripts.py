"""Rendered remote steps (pure): the scripts and files one step puts on one machine.

A step is a pair of templates, ``templates/steps/<template>.create.sh.j2`` and
``<template>.delete.sh.j2``, wrapped in ``_frame.sh.j2`` (strict shell, host lock, file install,
changed/unchanged report). ``step.RemoteStep`` turns a RenderedStep into Pulumi resources.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from ..render import TEMPLATES, digest, render

STAGING = "/var/lib/virtfleet/staging"
_WRAP = "VIRTFLEET_STEP"


@dataclass(frozen=True)
class RemoteFile:
    path: str  # absolute path on the machine
    content: str
    mode: int = 0o644

    def __post_init__(self):
        p = PurePosixPath(self.path)
        if not p.is_absolute() or ".." in p.parts:
            raise ValueError(f"a remote file path must be absolute without '..': {self.path!r}")
        if not self.content.endswith("\n"):
            object.__setattr__(self, "content", self.content + "\n")


@dataclass(frozen=True)
class RenderedStep:
    machine: str
    name: str
    create: str  # the whole script, as run
    delete: str
    files: tuple[RemoteFile, ...] = ()
    lock: bool = False
    secret: bool = False  # scripts embed secret files; never logged, never uploaded in the clear
    digest: str = field(default="")

    def staging_path(self, f: RemoteFile) -> str:
        return f"{STAGING}/{self.machine}/{self.name}{f.path}"

    @property
    def uploads(self) -> tuple[RemoteFile, ...]:
        """Files sent with CopyToRemote (secret steps embed theirs in the script instead)."""
        return () if self.secret else self.files


def render_step(
    machine: str,
    name: str,
    template: str,
    *,
    files: Sequence[RemoteFile] = (),
    lock: bool = False,
    secret: bool = False,
    install_files: bool = True,
    **context: Any,
) -> RenderedStep:
    """Render the create and delete scripts of step ``name`` for ``machine``.

    ``install_files=False``: the frame only stages ``files`` as ``$vf_candidates/<n>`` and the
    step's own script checks them (``haproxy -c``, say) before it installs them.
    """
    files = tuple(files)
    for n, f in enumerate(files if secret else (), 1):
        # A file a secret step embeds in its script ends at the line VIRTFLEET_FILE_<n> (a quoted
        # heredoc): a file holding that line would end it early and run the rest as commands.
        if f"\nVIRTFLEET_FILE_{n}\n" in f"\n{f.content}":
            raise ValueError(
                f"{machine}/{name}: {f.path} holds the line VIRTFLEET_FILE_{n}, which would end its heredoc"
            )
    content_digest = digest(
        template,
        repr(sorted(context.items(), key=lambda kv: kv[0])),
        *(f"{f.path}\0{f.mode}\0{f.content}" for f in files),
    )
    scripts = {"delete": ""}  # no delete template: nothing to undo, and no delete Command runs
    for action in ("create", "delete"):
        if action == "delete" and not (TEMPLATES / "steps" / f"{template}.delete.sh.j2").is_file():
            continue
        scripts[action] = render(
            "steps/_frame.sh.j2",
            body=f"steps/{template}.{action}.sh.j2",
            machine=machine,
            step=name,
            action=action,
            lock=lock,
            files=files,
            embed_files=secret,
            install_files=install_files,
            staging=f"{STAGING}/{machine}/{name}",
            digest=content_digest,
            **context,
        )
    return RenderedStep(machine, name, scripts["create"], scripts["delete"], files, lock, secret, content_digest)


# A secret step's script travels on the SSH session's stdin (pulumi-command's ``stdin``), never in
# the command text: a command line is readable by every local user in /proc/<pid>/cmdline while
# it runs, and auditd's execve records keep it. This runner reads the script into a variable, gives
# the script's own commands /dev/null as stdin, and evaluates it in the same bash.
STDIN_RUNNER = "/bin/bash -c 'vf_script=$(cat) && exec </dev/null && eval \"$vf_script\"' virtfleet-step"


_STEP_ARG0 = " virtfleet-step"


def as_check_command(command: str, staging: str | None = None) -> str:
    """A create command (``as_command``'s or ``STDIN_RUNNER``) that runs its script in check mode:
    it changes nothing and ends "in sync" or "drift: N" (``_frame.sh.j2``). ``staging``: a directory
    on the machine holding the step's files as the stack renders them now."""
    extra = " --check" + (f" {shlex.quote(staging)}" if staging is not None else "")
    for tail in (f"{_STEP_ARG0} </dev/null", _STEP_ARG0):
        if command.endswith(tail):
            return command[: -len(tail)] + _STEP_ARG0 + extra + tail[len(_STEP_ARG0) :]
    raise ValueError("not a step's create command: it does not end with its arguments' name, virtfleet-step")


def unwrap_command(command: str) -> str | None:
    """The script inside ``as_command``'s command text; None for another command (``STDIN_RUNNER``)."""
    head = f"<<'{_WRAP}'\n"
    start = command.find(head)
    end = command.rfind(f"{_WRAP}\n)")
    if start < 0 or end < start:
        return None
    return command[start + len(head) : end]


def as_command(script: str, *, stdin: bool = False) -> str:
    """The command string pulumi-command sends: bash runs the script whatever the login shell is.

    The script travels in the command text (never the ``environment`` field, which sshd drops
    without AcceptEnv), so the delete script is self-contained when it runs after later changes.
    ``stdin=True``: the command also runs with stdin from /dev/null, for the non-secret scripts of a
    resource whose stdin carries a secret script (pulumi-command sends one stdin to every action).
    """
    if f"\n{_WRAP}\n" in f"\n{script}":
        raise ValueError(f"a step script may not contain the line {_WRAP}")
    command = f"/bin/bash -c \"$(cat <<'{_WRAP}'\n{script}{_WRAP}\n)\" virtfleet-step"
    return f"{command} </dev/null" if stdin else command
