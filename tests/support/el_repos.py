"""The repositories a role adds, as one shell command, for tests that install a role's packages
directly: the ``yum``/``dnf`` fake installs a package only from an enabled repository that
provides it (``tests/fakes/catalogue.py``), as the real ones do."""

from __future__ import annotations

import shlex

from components.hosts.host_steps import REPO_DIR
from components.hosts.roles import role_setup
from components.model import Role
from components.osfamily import os_family


def role_repos_command(role: str, family: str) -> str:
    """Shell that puts role ``role``'s repository files in place and installs its release packages."""
    setup = role_setup(Role(role), family)
    parts = [f"mkdir -p {REPO_DIR}"]
    parts += [f"printf %s {shlex.quote(text)} > {shlex.quote(f'{REPO_DIR}/{name}')}" for name, text in setup.repo_files]
    sources = [spec.split("=", 1)[-1] for spec in setup.repo_packages]
    if sources:
        parts.append(f"{os_family(family).package_manager} -y -q install {shlex.join(sources)} >/dev/null")
    return " && ".join(parts)
