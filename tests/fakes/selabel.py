"""SELinux file labels, shared by the fakes ``chcon``, ``restorecon`` and ``semanage fcontext``.

A label lives where SELinux keeps it, in the ``security.selinux`` extended attribute, so Debian's
real ``stat -c %C`` and ``ls -Z`` read what the fakes write. This machine runs no SELinux, so
nothing labels a new file: a file without the attribute counts as carrying the label EL's policy
gives its path (``policy_label``: ``DEFAULT_TYPES``, ``default_t`` otherwise), as every file on an
EL host has one.

What a relabel gives a path (``wanted_label``, as ``matchpathcon``/``restorecon`` compute it): the
local file-context rules of ``semanage fcontext -a`` first (state ``fcontext.json``, in the order
they were added; each spec is a regex matched against the whole path, and the last added rule that
matches wins — real libselinux also prefers specs without regex characters, which our rules never
need), otherwise the policy's own rules (``policy_rules()``, from ``DEFAULT_TYPES`` and the family's).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import fakelib

XATTR = "security.selinux"
# Longest prefix wins; what EL's targeted policy labels these trees (file_contexts), trimmed.
DEFAULT_TYPES = {
    "/": "root_t",
    "/etc": "etc_t",
    "/etc/pki": "cert_t",  # miscfiles: /etc/pki(/.*)?
    "/var": "var_t",
    "/var/lib": "var_lib_t",
    "/var/log": "var_log_t",
    "/var/www": "httpd_sys_content_t",
    "/var/lib/docker": "container_var_lib_t",
    "/tmp": "tmp_t",
    "/root": "admin_home_t",
    "/home": "home_root_t",
    "/srv": "var_t",
    "/opt": "usr_t",
    "/usr": "usr_t",
    "/boot": "boot_t",
}
# /etc/selinux/targeted/contexts/customizable_types (EL9, trimmed): restorecon leaves a file of
# one of these types alone unless -F ("not reset as customized by admin").
CUSTOMIZABLE_TYPES = {
    "container_file_t",
    "sandbox_file_t",
    "svirt_image_t",
    "virt_content_t",
    "httpd_user_content_t",
    "httpd_user_rw_content_t",
    "home_bin_t",
    "user_tty_device_t",
}
# The policy's file types that `semanage fcontext -t` accepts (the `file_type` attribute, trimmed).
FILE_TYPES = {
    *DEFAULT_TYPES.values(),
    *CUSTOMIZABLE_TYPES,
    "default_t",
    "httpd_sys_rw_content_t",
    "public_content_t",
    "public_content_rw_t",
    "virt_image_t",
    "var_run_t",
    "bin_t",
    "lib_t",
    "haproxy_var_lib_t",
    "container_var_run_t",
    "keepalived_unconfined_script_exec_t",
}
# `semanage fcontext -f` values (short and long forms) -> the name `-l` prints in its type column.
FTYPES = {
    "a": "all files", "f": "regular file", "d": "directory", "c": "character device",
    "b": "block device", "s": "socket", "l": "symbolic link", "p": "named pipe",
    "all files": "all files", "regular file": "regular file", "directory": "directory",
    "character device": "character device", "block device": "block device", "socket": "socket",
    "symbolic link": "symbolic link", "named pipe": "named pipe",
}  # fmt: skip
_FTYPE_TESTS = {
    "regular file": stat.S_ISREG, "directory": stat.S_ISDIR, "character device": stat.S_ISCHR,
    "block device": stat.S_ISBLK, "socket": stat.S_ISSOCK, "symbolic link": stat.S_ISLNK,
    "named pipe": stat.S_ISFIFO,
}  # fmt: skip


def context(type_: str, user: str = "system_u", level: str = "s0") -> str:
    return f"{user}:object_r:{type_}:{level}"


def tree_spec(prefix: str) -> str:
    """The file_contexts spec of a tree as EL's policy writes it: ``/etc/pki(/.*)?``, dots escaped."""
    return prefix.replace(".", r"\.") + "(/.*)?"


# Types a family's policy adds: EL9 ships cockpit's own SELinux module, whose file contexts label
# /etc/cockpit/ws-certs\.d(/.*)? cert_t; EL7's policy has no rule there (etc_t, which cockpit 195's
# remotectl also sets with chcon each time cockpit.service starts).
# keepalived's module (selinux-policy's keepalived.fc) labels /usr/libexec/keepalived(/.*)?
# keepalived_unconfined_script_exec_t: the scripts keepalived_t may run unconfined. On EL9 for
# certain; upstream (Fedora's selinux-policy-contrib) added the rule in Nov 2014 (F21), after EL7's
# 3.13.1 base, and no EL7 file_contexts could be checked here: EL7 is given the same rule, unconfirmed.
KEEPALIVED_SCRIPTS = {"/usr/libexec/keepalived": "keepalived_unconfined_script_exec_t"}
FAMILY_TYPES = {
    "el7": {**KEEPALIVED_SCRIPTS},
    "el9": {"/etc/cockpit/ws-certs.d": "cert_t", **KEEPALIVED_SCRIPTS},
}


def default_types() -> dict[str, str]:
    return {**DEFAULT_TYPES, **FAMILY_TYPES[fakelib.dist()]}


def policy_rules() -> dict[tuple[str, str], str]:
    """The policy's own rules (semanage fcontext -l without -C): (spec, ftype) -> context."""
    return {
        ("/.*", "all files"): context("default_t"),
        ("/", "directory"): context("root_t"),
        **{(tree_spec(p), "all files"): context(t) for p, t in default_types().items() if p != "/"},
    }


def walk(top: Path) -> list[Path]:
    """``top`` and, for a directory (not a symlink to one), everything below it, parents first."""
    paths = [top]
    if top.is_dir() and not top.is_symlink():
        for root, dirs, files in os.walk(top):
            paths += [Path(root, n) for n in sorted(dirs) + sorted(files)]
    return paths


def current(path: Path) -> str | None:
    """The label in the file's attribute, or None when it has none."""
    try:
        return os.getxattr(path, XATTR, follow_symlinks=False).rstrip(b"\0").decode()
    except OSError:
        return None


def write(path: Path, label: str) -> None:
    os.setxattr(path, XATTR, label.encode() + b"\0", follow_symlinks=False)


def policy_label(path: Path) -> str:
    """The label EL's policy gives ``path`` (what an unlabelled file counts as carrying)."""
    text = os.path.abspath(path)
    if text == "/":
        return context(DEFAULT_TYPES["/"])
    # as policy_rules(): the longest tree that holds it, else /.* (default_t); "/" covers only itself
    types = default_types()
    trees = [p for p in types if p != "/" and (text == p or text.startswith(p + "/"))]
    return context(types[max(trees, key=len)] if trees else "default_t")


def local_rules() -> list[dict]:
    """``semanage fcontext -a`` rules, in the order they were added: {spec, ftype, context}."""
    return fakelib.load("fcontext", [])


def save_local_rules(rules: list[dict]) -> None:
    fakelib.save("fcontext", rules)


def _ftype_matches(ftype: str, path: Path) -> bool:
    return ftype == "all files" or _FTYPE_TESTS[ftype](os.lstat(path).st_mode)


def wanted_label(path: Path) -> str:
    """What ``restorecon`` gives ``path``: the last added local rule that matches, else the policy."""
    text = os.path.abspath(path)
    for rule in reversed(local_rules()):
        if re.fullmatch(rule["spec"], text) and _ftype_matches(rule["ftype"], path):
            return rule["context"]
    return policy_label(path)
