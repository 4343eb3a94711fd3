"""SSH trust for the providers that do not take a host key directly: libvirt's qemu+ssh and Docker's ssh://.

pulumi-command verifies ``host_key`` itself. The libvirt provider (dmacvicar's Go SSH client) and
the Docker provider (the system ``ssh`` binary) read a known_hosts file and a key file instead, so
virtfleet writes them per host, holding only the pinned key(s), on the machine running Pulumi:

- the program writes them whenever it runs (``write_trust_files``), before the providers are
  configured: pulumi-libvirt connects while it is configured, already in the first ``preview``,
  and on every operator's machine, not only the one that ran the first ``up``;
- a ``command.local.Command`` writes the same bytes at ``up`` and removes them at ``destroy``
  (after everything that used them: the providers depend on it).
 The libvirt URI names it with ``knownhosts=`` (the provider's parameter;
libvirt's own ``known_hosts=`` is not read by it) and never sets ``no_verify`` or
``known_hosts_verify=ignore``: a wrong key fails the connection. Without a pinned key the URIs
use the user's own ~/.ssh/known_hosts and the plan warns (``HypervisorHost``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from ..model import Fleet, Host
from ..render import shquote

# ${HOME} is expanded by the libvirt provider (os.ExpandEnv) and "~" by ssh, on the Pulumi machine.
TRUST_DIR = "${{HOME}}/.virtfleet/{stack}/{host}"


def known_hosts_line(address: str, port: int, key: str) -> str:
    """OpenSSH's form: a bare address on port 22, ``[address]:port`` otherwise."""
    target = address if port == 22 else f"[{address}]:{port}"
    return f"{target} {key}"


@dataclass(frozen=True)
class HostTrust:
    """Where the trust files of one host live and how each provider is told about them."""

    directory: str  # with ${HOME}
    known_hosts: tuple[str, ...]  # lines; empty when no key is pinned
    use_keyfile: bool  # False with ssh.useAgent

    @property
    def known_hosts_path(self) -> str:
        return f"{self.directory}/known_hosts"

    @property
    def keyfile_path(self) -> str:
        return f"{self.directory}/id"

    def libvirt_uri(self, fleet: Fleet, host: Host) -> str:
        params: dict[str, str] = {"sshauth": "privkey" if self.use_keyfile else "agent"}
        if self.use_keyfile:
            params["keyfile"] = self.keyfile_path
        if self.known_hosts:
            params["knownhosts"] = self.known_hosts_path
        query = urlencode(params, quote_via=quote, safe="/")
        # No port: the provider would read "address:port" as the host name (the model keeps kvm hosts
        # on port 22, rules.libvirt_reach).
        return f"qemu+ssh://{quote(fleet.ssh.user)}@{host.address}/system?{query}"

    def docker_ssh_opts(self, fleet: Fleet) -> list[str]:
        tilde = self.directory.replace("${HOME}", "~")
        opts = ["-o", "BatchMode=yes"]
        if self.known_hosts:
            opts += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={tilde}/known_hosts"]
        if self.use_keyfile:
            opts += ["-o", "IdentitiesOnly=yes", "-i", f"{tilde}/id"]
        jump = fleet.ssh.jump_host
        if jump is not None:
            opts += ["-J", f"{jump.user}@{jump.host}:{jump.port}"]
        return opts

    def _shell_directory(self) -> str:
        return '"$HOME"/' + shquote(self.directory.removeprefix("${HOME}/"))

    def write_script(self) -> str:
        """Shell run locally: known_hosts from the script text, the private key from stdin."""
        directory = self._shell_directory()
        lines = ["set -eu", "umask 077", f"mkdir -p {directory}"]
        content = "".join(f"{line}\n" for line in self.known_hosts)
        lines.append(f"printf '%s' {shquote(content)} > {directory}/known_hosts")
        if self.use_keyfile:
            lines.append(f"cat > {directory}/id")
        return "\n".join(lines) + "\n"

    def delete_script(self) -> str:
        """The files, then their directory and the stack's when that leaves them empty."""
        directory = self._shell_directory()
        return (
            f"rm -f {directory}/known_hosts {directory}/id\n"
            f'rmdir {directory} 2>/dev/null || true\nrmdir "$(dirname {directory})" 2>/dev/null || true\n'
        )


def write_trust_files(trust: HostTrust, private_key: str | None, home: str) -> str:
    """Write ``known_hosts`` (and ``id`` when given) under ``home`` as the Command does: directory
    0700, files 0600, each replaced atomically with exactly the bytes the Command writes (so a
    provider never reads half a file). Returns the directory."""
    directory = Path(trust.directory.replace("${HOME}", home))
    for level in reversed([directory, *directory.parents]):
        if not level.exists():
            level.mkdir(mode=0o700)  # every level it makes private, as the Command's umask 077 does
    files = {"known_hosts": "".join(f"{line}\n" for line in trust.known_hosts)}
    if trust.use_keyfile and private_key is not None:
        files["id"] = private_key
    for name, content in files.items():
        partial = directory / f".{name}.{os.getpid()}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        partial.replace(directory / name)
    return str(directory)


def host_trust(fleet: Fleet, host: Host, stack: str) -> HostTrust:
    lines = []
    if host.host_key is not None:
        lines.append(known_hosts_line(host.address, host.port, host.host_key))
    jump = fleet.ssh.jump_host
    if jump is not None and jump.host_key is not None:
        lines.append(known_hosts_line(jump.host, jump.port, jump.host_key))
    return HostTrust(TRUST_DIR.format(stack=stack, host=host.name), tuple(lines), not fleet.ssh.use_agent)
