"""The one way virtfleet runs scripts on machines: CopyToRemote for files, Command for scripts.

ARCHITECTURE §2: a change of anything rendered re-runs exactly this step (``update`` is the
create script: re-running it is safe because it is idempotent, and an update never runs the
delete script). The digest of everything rendered is in the script's first lines (and a secret
step's stdin), so any change alters the Command's inputs: an update. The Command's ``triggers``
hold only the step's identity: pulumi-command's SDK marks ``triggers[*]`` replace-on-change, and
a replace (create before delete) would run the *old* delete after the new create and undo the
step (pulumi/pulumi-command#855). Values travel in the script text, never in
``environment``; steps that carry a secret embed their files, send their create script on
stdin behind a fixed command line (``scripts.STDIN_RUNNER``: no secret in any process's argv), mark
stdin and delete secret and turn logging off.
"""

from __future__ import annotations

import pulumi
import pulumi_command as command

from .scripts import STDIN_RUNNER, RenderedStep, as_command


class RemoteStep(pulumi.ComponentResource):
    """One rendered step on one machine (type ``virtfleet:remote:RemoteStep``)."""

    def __init__(
        self,
        step: RenderedStep | pulumi.Output[RenderedStep],
        *,
        machine: str,
        name: str,
        connection: command.remote.ConnectionArgs,
        replace_key: pulumi.Input[str] | None = None,
        protect: bool = False,
        download: dict[str, str] | None = None,
        public_files: dict[str, str] | None = None,
        drift: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """``step`` is a RenderedStep, or for secret steps an Output of one.

        ``replace_key`` (remote guests, ``guests/remote_guest.py``): the Command's ``triggers`` carry
        only this key, a digest of the fields that cannot change in place. pulumi-command's SDK marks
        ``triggers[*]`` replace-on-change, so a new key is a replace (delete before create: the old
        guest goes before the new one takes its id), and any other change of the rendered scripts
        is an update that runs the idempotent create script again. ``protect``: Pulumi refuses to
        delete the Command (and so to run its delete script). ``download`` (shared image steps):
        ``{"url", "sha256"}`` of the file the step fetches, a prop the policy pack reads
        (images-pinned) without parsing the script. ``public_files`` (secret steps): the files with
        their secrets masked, known before anything is created, as the ``files`` prop the policy pack
        judges at preview (the real ones depend on a generated password, unknown until it exists).

        Secret steps must be built inside ``Output.apply`` (their text depends on a secret), so
        their resources cannot depend on the text: they upload nothing and their scripts are
        secret Outputs. ``drift=False``: `make drift` does not check the step (the ``drift`` prop), for
        a step that is an action of a roll (a drain), not a state to keep: after any deploy it would
        act again.
        """
        secret = isinstance(step, pulumi.Output)
        resolved = pulumi.Output.from_input(step)
        super().__init__(
            "virtfleet:remote:RemoteStep",
            f"{machine}-{name}",
            {
                "machine": machine,
                "step": name,
                "secret": secret,
                "files": public_files
                if public_files is not None
                else resolved.apply(lambda s: {f.path: f.content for f in s.files}),
                "createScript": resolved.apply(lambda s: s.create),
                "deleteScript": resolved.apply(lambda s: s.delete),
                "drift": drift,
                **({"download": download} if download is not None else {}),
            },
            opts,
        )
        # A component's depends_on does not reach its children: pass it on, so that the steps of
        # one host run in the order the host chains them.
        after = list((opts.depends_on if opts else None) or [])
        child = pulumi.ResourceOptions(parent=self, depends_on=after)
        uploads = []
        if not secret:
            for f in step.uploads:
                uploads.append(
                    command.remote.CopyToRemote(
                        f"{machine}-{name}-file{f.path.replace('/', '-')}",
                        connection=connection,
                        source=pulumi.StringAsset(f.content),
                        remote_path=step.staging_path(f),
                        triggers=[step.digest],
                        opts=child,
                    )
                )
        if secret:
            # The secret create script goes on stdin; the command line is the fixed STDIN_RUNNER.
            create, stdin = STDIN_RUNNER, pulumi.Output.secret(resolved.apply(lambda s: s.create))
            delete = pulumi.Output.secret(resolved.apply(lambda s: as_command(s.delete, stdin=True)))
        else:
            create, stdin = resolved.apply(lambda s: as_command(s.create)), None
            delete = resolved.apply(lambda s: as_command(s.delete))
        if isinstance(step, RenderedStep) and not step.delete:
            delete = None  # a step with nothing to undo (no delete template): destroy connects to nothing
        self.command = command.remote.Command(
            f"{machine}-{name}",
            connection=connection,
            create=create,
            update=create,
            delete=delete,
            stdin=stdin,
            triggers=[replace_key if replace_key is not None else f"{machine}/{name}"],
            logging=command.remote.Logging.NONE if secret else command.remote.Logging.STDOUT_AND_STDERR,
            add_previous_output_in_env=False,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*after, *uploads],
                delete_before_replace=replace_key is not None,
                protect=protect,
            ),
        )
        self.stdout = self.command.stdout
        self.register_outputs({"stdout": self.command.stdout})
