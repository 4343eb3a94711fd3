#!/usr/bin/env -S python3 -S
"""Fake ``docker`` CLI: the engine answers only while the fake systemd runs docker.service.

``version [--format TEMPLATE]`` and ``info [--format TEMPLATE]``, the commands virtfleet's docker
role uses to check that the engine answers. As the real client does, ``version`` prints its own
version and fails with "Cannot connect to the Docker daemon" (exit 1) when no engine runs;
``--format '{{.Server.Version}}'`` prints the server version alone. Anything else is refused like
an unknown command.
"""

from __future__ import annotations

import fakelib

CLIENT_VERSION = SERVER_VERSION = "26.1.3"
NO_DAEMON = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
FORMATS = {"{{.Server.Version}}": SERVER_VERSION, "{{.ServerVersion}}": SERVER_VERSION}


def main(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] not in {"version", "info"}:
        fakelib.fail(f"docker: '{argv[0] if argv else ''}' is not a docker command.\nSee 'docker --help'")
    command, rest = argv[0], argv[1:]
    template = None
    if rest[:1] in (["--format"], ["-f"]) and len(rest) == 2:
        template = rest[1]
    elif rest:
        fakelib.fail(f"unknown flag: {rest[0]}\nSee 'docker {command} --help'.", 125)
    running = fakelib.unit_active("docker")
    if template == "{{.Client.Version}}":
        print(CLIENT_VERSION)
        return 0
    if not running:
        if command == "version" and template is None:
            print(f"Client: Docker Engine - Community\n Version:           {CLIENT_VERSION}")
        fakelib.fail(NO_DAEMON)
    if template is not None:
        if template not in FORMATS:
            fakelib.fail(f"template: {template}: unsupported by this fake", 1)
        print(FORMATS[template])
    else:
        print(f"Server: Docker Engine - Community\n Engine:\n  Version:          {SERVER_VERSION}")
    return 0


if __name__ == "__main__":
    fakelib.run(main)
