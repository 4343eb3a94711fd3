"""SSH trust for the providers that do not take a host key directly: libvirt's qemu+ssh and Docker's ssh://.

pulumi-command verifies ``host_key`` itself. The libvirt provider (dmacvicar's Go SSH client) and
the Docker provider (the system ``ssh`` binary) read a known_hosts file instead, so virtfleet
writes one per host, holding only the pinned key(s), with a ``command.local.Command`` on the
machine running Pulumi. The libvirt URI names it with ``knownhosts=`` (the provider's parameter;
libvirt's own ``known_hosts=`` is not read by it) and never sets ``no_verify`` or
``known_hosts_verify=ignore``: a wrong key fails the connection. Without a pinned key the URIs
use the user's own ~/.ssh/known_hosts and the plan warns (``HypervisorHost``).
"""

from __future__ import annotations

from dataclasses import dataclass
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
        return f"qemu+ssh://{quote(fleet.ssh.user)}@{host.address}:{host.port}/system?{query}"

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
        directory = self._shell_directory()
        return f"rm -f {directory}/known_hosts {directory}/id\nrmdir {directory} 2>/dev/null || true\n"


def host_trust(fleet: Fleet, host: Host, stack: str) -> HostTrust:
    lines = []
    if host.host_key is not None:
        lines.append(known_hosts_line(host.address, host.port, host.host_key))
    jump = fleet.ssh.jump_host
    if jump is not None and jump.host_key is not None:
        lines.append(known_hosts_line(jump.host, jump.port, jump.host_key))
    return HostTrust(TRUST_DIR.format(stack=stack, host=host.name), tuple(lines), not fleet.ssh.use_agent)
