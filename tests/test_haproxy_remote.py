"""L4: the prod stack's HAProxy tier steps executed for real over SSH.

The exact ``create``/``delete`` strings that the program records for each Command run through a
real sshd (``LoopbackSshd``: a throwaway view of this machine) after their CopyToRemote uploads,
as pulumi-command would send them. The config step is secret: the recording unwraps secret inputs
(its ``secret_paths`` say which), and under the plan's mocks the stats password is the known
placeholder, so the recorded text is run as is.

Real tools: ``rsyslogd -N1`` (reading an EL9-style /etc/rsyslog.conf that includes
/etc/rsyslog.d/*.conf), ``haproxy -c`` (Debian's haproxy), ``systemd-tmpfiles``, ``stat``, bash and
coreutils. Stateful fakes of ``tests/fakes`` stand in for the EL tools: dnf/yum, rpm, systemctl
(its ``jobs`` log tells a reload from none), getsebool/setsebool, firewall-cmd, ``semanage``
and ``restorecon`` (file-context rules applied as the ``security.selinux`` attribute that the real
``stat -c %C`` reads: this kernel runs no SELinux) and ``vzctl`` (OpenVZ needs its own kernel:
a container is a directory whose /etc, /var, /run... a command run by ``vzctl exec2`` sees in
its own mount namespace). The steps talk to no
network, so no namespace is needed: sshd listens on 127.0.0.1.
"""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from support.drift_check import drift, drifted
from support.el_repos import role_repos_command
from support.sshd import FAKES_BIN, LoopbackSshd
from support.step_run import run
from support.tools import require_root, require_tool

import components.lb.tier as tier
from components.lb.balancer_files import (
    CONFIG_PATH,
    HTTPD_MOVES,
    RSYSLOG_PATH,
    TMPFILES_PATH,
    balancer_ports,
    firewall_ports,
)
from components.lb.web_servers import SEED_FIREWALL_PORTS, web_server_steps
from components.remote.scripts import STAGING, STDIN_RUNNER, as_command
from lab.view import EL_RELEASE
from plan.mocks import placeholder, planned_tls
from plan.run import load_stack, run_program

pytestmark = pytest.mark.real
HTTPD_CONF = "/etc/httpd/conf/httpd.conf"
COVERED_WEB_SERVERS = {"webserver1": "kvm", "webserver2": "xen", "webserver3": "openvz", "backupwebserver": "docker"}
STATS_PASSWORD = placeholder("random-password")  # what the mocks give the generated password
# EL9's /etc/rsyslog.conf, trimmed to what `rsyslogd -N1` reads: its modules, the include, rules.
EL_RSYSLOG_CONF = """\
global(workDirectory="/var/lib/rsyslog")
module(load="builtin:omfile" Template="RSYSLOG_TraditionalFileFormat")
module(load="imuxsock" SysSock.Use="off")
module(load="imjournal" UsePid="system" StateFile="imjournal.state")
include(file="/etc/rsyslog.d/*.conf" mode="optional")
*.info;mail.none;authpriv.none;cron.none                /var/log/messages
authpriv.*                                              /var/log/secure
mail.*                                                  -/var/log/maillog
cron.*                                                  /var/log/cron
*.emerg                                                 :omusrmsg:*
local7.*                                                /var/log/boot.log
"""
# Every file and directory where steps write (not /root, /home, /opt, /usr: this machine's own
# 250k files there would make it slow), with mode, size and mtime, plus the content of every fake's
# state (host and containers): equal before and after = the run changed nothing.
SNAPSHOT = (
    "find /etc /var /run /boot /srv -xdev \\( -path /var/log -o -path /var/cache "
    "-o -path '*/run/lock/virtfleet.lock' -o -path '*/virtfleet-fakes/.lock' -o -path '*/run/mount' \\) -prune "
    "-o -path '*/virtfleet-fakes/*.json' -exec sha256sum {} + -o -type d -printf '%p %m\\n' "
    "-o -printf '%p %m %s %T@\\n' | sort"
)


@dataclass(frozen=True)
class Step:
    """One recorded Command: its exact create/delete text and its CopyToRemote uploads."""

    machine: str
    name: str
    create: str
    delete: str
    uploads: tuple[tuple[str, str], ...]  # (remote path, text)
    stdin: str | None = None  # a secret step's create script (pulumi-command sends it to every action)

    def installed(self) -> dict[str, str]:
        """What the frame installs from the uploads: destination path -> text."""
        prefix = f"{STAGING}/{self.machine}/{self.name}"
        return {remote.removeprefix(prefix): text for remote, text in self.uploads}

    def report(self, action: str, word: str) -> str:
        return f"virtfleet: {self.machine}/{self.name} ({action}): {word}"


@pytest.fixture(scope="module")
def prod():
    config, fleet = load_stack("prod")
    return fleet, run_program(config)


def recorded(rec, machine: str, name: str) -> Step:
    command = rec.named(f"{machine}-{name}", "command:remote:Command")
    uploads = tuple(
        (r.inputs["remotePath"], r.inputs["source"]["text"])
        for r in rec.of_type("command:remote:CopyToRemote")
        if r.parent == command.parent
    )
    inputs = command.inputs
    return Step(machine, name, inputs["create"], inputs["delete"], uploads, inputs.get("stdin"))


def ok(sshd: LoopbackSshd, command: str) -> str:
    return sshd.run(command, check=True, timeout=120).stdout


def probe(sshd: LoopbackSshd, **commands: str) -> dict[str, tuple[int, str]]:
    """Several checks in ONE SSH session (a handshake each would double the runtime):
    name -> (exit status, stdout)."""
    results = sshd.run_each(list(commands.values()))
    return {name: (r.returncode, r.stdout) for name, r in zip(commands, results, strict=True)}


def jobs(state_json: str) -> list[tuple[str, str]]:
    """The fake systemd's job log (start/stop/restart/reload, in order) from its systemd.json."""
    return [(j["verb"], j["unit"]) for j in json.loads(state_json).get("jobs", [])]


JOBS = "cat /var/lib/virtfleet-fakes/systemd.json"


def firewall(ports: list[str], *, inside: str = "") -> str:
    """A command printing '<port> permanent' and '<port> runtime' for each open one of ``ports``."""
    loop = (
        f"for p in {' '.join(ports)}; do for s in permanent runtime; do "
        'firewall-cmd -q $([ $s = permanent ] && echo --permanent) --query-port=$p && echo "$p $s"; done; done; true'
    )
    return f"{inside}{shlex.quote(loop)}" if inside else loop


def opened(ports: list[str]) -> str:
    return "".join(f"{p} {scope}\n" for p in ports for scope in ("permanent", "runtime"))


def upload(sshd: LoopbackSshd, step: Step, replace: dict[str, str] | None = None) -> None:
    for remote, text in step.uploads:
        sshd.upload((replace or {}).get(remote, text), remote)


def converge(sshd: LoopbackSshd, step: Step) -> None:
    """Run create twice: the first must change the machine, the second nothing at all."""
    first = run(sshd, step.create, step.stdin)
    assert first.code == 0 and first.last == step.report("create", "changed"), f"first create:\n{first}"
    before = ok(sshd, SNAPSHOT)
    second = run(sshd, step.create, step.stdin)
    assert second.code == 0 and second.last == step.report("create", "unchanged"), f"second create:\n{second}"
    assert not [line for line in second.out if line.startswith("changed:")], f"second create:\n{second}"
    assert ok(sshd, SNAPSHOT) == before, "the second create changed files or the fakes' state"


def undo(sshd: LoopbackSshd, step: Step, *, runtime_port: bool = True) -> None:
    """Run delete twice: changed, then unchanged and really nothing (with ``runtime_port``, a
    runtime-only firewall port survives: the second delete must not reload firewalld)."""
    first = run(sshd, step.delete, step.stdin)
    assert first.code == 0 and first.last == step.report("delete", "changed"), f"first delete:\n{first}"
    prepare = "systemctl is-active -q firewalld && firewall-cmd -q --add-port=9/udp; " if runtime_port else ""
    before = ok(sshd, prepare + SNAPSHOT)
    second = run(sshd, step.delete, step.stdin)
    assert second.code == 0 and second.last == step.report("delete", "unchanged"), f"second delete:\n{second}"
    assert ok(sshd, SNAPSHOT) == before, "the second delete changed files or the fakes' state"


def el_machine(sshd: LoopbackSshd, os_family: str, *, balancer: bool = False) -> None:
    """The view as a fresh EL machine: its release; for the balancer also EL's rsyslog.conf and no
    Debian haproxy/rsyslog extras; the checks the steps run are the real tools, not fakes."""
    sshd.upload(EL_RELEASE[os_family], "/etc/redhat-release")
    if balancer:
        sshd.upload(EL_RSYSLOG_CONF, "/etc/rsyslog.conf")
        tools = ok(
            sshd,
            "rm -rf /etc/rsyslog.d /etc/haproxy && mkdir -p /etc/rsyslog.d /var/lib/rsyslog && "
            "command -v rsyslogd haproxy systemd-tmpfiles stat",
        ).split()
        assert len(tools) == 4 and not any(t.startswith(str(FAKES_BIN)) for t in tools), tools


def require_real_tools() -> None:
    require_root()
    for tool in ("rsyslogd", "haproxy", "systemd-tmpfiles", "sshd"):
        require_tool(tool)


# -- haproxy-install ---------------------------------------------------------------------------------


def test_haproxy_install_converges_once_then_changes_nothing(prod):
    require_real_tools()
    fleet, rec = prod
    lb = fleet.load_balancer
    step = recorded(rec, lb.primary, "haproxy-install")
    files = step.installed()
    assert set(files) == {RSYSLOG_PATH, TMPFILES_PATH}, files
    ports = [f"{p}/tcp" for p in firewall_ports(lb)]
    # The socket directory, as the rendered tmpfiles.d line asks (made by the real systemd-tmpfiles).
    kind, socket_dir, mode, user, group, *_ = next(
        line.split() for line in files[TMPFILES_PATH].splitlines() if line and line[0] != "#"
    )
    assert kind == "d", files[TMPFILES_PATH]
    with LoopbackSshd() as sshd:
        el_machine(sshd, fleet.guest(lb.primary).os_family, balancer=True)
        upload(sshd, step)
        fresh = probe(sshd, haproxy="rpm -q haproxy", sebool="getsebool haproxy_connect_any")
        assert fresh == {
            "haproxy": (1, "package haproxy is not installed\n"),
            "sebool": (0, "haproxy_connect_any --> off\n"),
        }
        converge(sshd, step)
        got = probe(
            sshd,
            packages="rpm -q haproxy rsyslog",
            **{path: f"cat {path}" for path in files},
            modes=f"stat -c %a {' '.join(files)}",
            socket_dir=f"stat -c '%a %U %G' {socket_dir}",
            jobs=JOBS,
            rsyslog="systemctl is-active rsyslog; systemctl is-enabled rsyslog",
            sebool="getsebool haproxy_connect_any",
            firewall=firewall(ports),
            rebooted="systemctl reboot && getsebool haproxy_connect_any",  # -P: still on after a boot
        )
        assert got["packages"][0] == 0, got["packages"]
        assert {path: got[path][1] for path in files} == files, "the rendered files are installed"
        assert got["modes"][1].split() == ["644"] * len(files), got["modes"]
        assert got["socket_dir"][1].split() == [mode.lstrip("0"), user, group], got["socket_dir"]
        assert ("restart", "rsyslog.service") in jobs(got["jobs"][1]), got["jobs"]
        assert got["rsyslog"][1].split() == ["active", "enabled"], got["rsyslog"]
        assert got["sebool"][1] == got["rebooted"][1] == "haproxy_connect_any --> on\n", (
            got["sebool"],
            got["rebooted"],
        )
        assert got["firewall"][1] == opened(ports), got["firewall"]


def test_haproxy_install_moves_httpd_off_the_balancer_ports_and_delete_undoes_it(prod):
    require_real_tools()
    fleet, rec = prod
    lb = fleet.load_balancer
    step = recorded(rec, lb.primary, "haproxy-install")
    moves = {old: new for old, new in HTTPD_MOVES.items() if old in balancer_ports(lb)}
    assert moves == {80: 8080, 443: 8443}, "prod's HTTPS balancer takes 80 and 443 from httpd"
    ports = [f"{p}/tcp" for p in firewall_ports(lb)]
    ssl_conf = "/etc/httpd/conf.d/ssl.conf"
    with LoopbackSshd() as sshd:
        el_machine(sshd, fleet.guest(lb.primary).os_family, balancer=True)
        original = ok(
            sshd, f"dnf -y install httpd >/dev/null && systemctl enable --now httpd 2>/dev/null && cat {HTTPD_CONF}"
        )
        assert "Listen 80" in original.splitlines(), original
        sshd.upload("Listen 443 https\nSSLEngine on\n", ssl_conf)  # mod_ssl's, as it ships
        upload(sshd, step)
        converge(sshd, step)
        listens = f"grep -h ^Listen {HTTPD_CONF} {ssl_conf}"
        got = probe(sshd, listens=listens, jobs=JOBS, httpd="systemctl is-active httpd")
        assert got["listens"][1].splitlines() == ["Listen 8080", "Listen 8443 https"], got["listens"]
        assert ("restart", "httpd.service") in jobs(got["jobs"][1]) and got["httpd"][0] == 0, got

        before = jobs(got["jobs"][1])
        undo(sshd, step)
        got = probe(
            sshd,
            conf=f"cat {HTTPD_CONF}",
            files=f"ls {' '.join(step.installed())}",
            jobs=JOBS,
            active="systemctl is-active httpd rsyslog",
            firewall=firewall(ports),
            packages="rpm -q haproxy rsyslog",
            sebool="getsebool haproxy_connect_any",
        )
        assert got["conf"][1] == original, "httpd is back on its ports, byte for byte"
        assert sshd.read(ssl_conf) == "Listen 443 https\nSSLEngine on\n", "mod_ssl's port too"
        assert got["files"][0] != 0 and not got["files"][1], f"delete removes the files: {got['files']}"
        new_jobs = jobs(got["jobs"][1])[len(before) :]
        assert sorted(new_jobs) == [("restart", "httpd.service"), ("restart", "rsyslog.service")], new_jobs
        assert got["active"][1].split() == ["active", "active"], got["active"]
        assert got["firewall"][1] == "", f"the balancer's ports are closed again: {got['firewall']}"
        # What it installed goes (haproxy; rsyslog was the node's own), the boolean is off again.
        assert got["packages"][1].splitlines()[0] == "package haproxy is not installed", got["packages"]
        assert got["packages"][1].splitlines()[1].startswith("rsyslog-"), got["packages"]
        assert got["sebool"][1] == "haproxy_connect_any --> off\n", got["sebool"]


def test_haproxy_install_delete_with_nothing_to_undo_leaves_firewalld_alone(prod):
    require_real_tools()
    fleet, rec = prod
    step = recorded(rec, fleet.load_balancer.primary, "haproxy-install")
    with LoopbackSshd() as sshd:
        el_machine(sshd, fleet.guest(step.machine).os_family, balancer=True)
        ok(sshd, "firewall-cmd --quiet --add-port=9/udp")  # runtime only, e.g. another tool's
        result = run(sshd, step.delete)
        assert result.code == 0 and result.last == step.report("delete", "unchanged"), str(result)
        assert ok(sshd, "firewall-cmd --list-ports").split() == ["9/udp"], "the runtime-only port was dropped"


BROKEN_SNIPPET_LINE = 'input(type="imudp" port="514" no_such_parameter="on")\n'


def test_haproxy_install_rejects_a_broken_rsyslog_snippet_and_keeps_rsyslog_running(prod):
    """The uploaded snippet is tampered with (as a bad render would upload it); the real
    ``rsyslogd -N1`` must reject it, the step put back what was there (nothing, on a fresh node)
    and fail without touching rsyslog."""
    require_real_tools()
    fleet, rec = prod
    step = recorded(rec, fleet.load_balancer.primary, "haproxy-install")
    (staged,) = [remote for remote, _ in step.uploads if remote.endswith(RSYSLOG_PATH)]
    broken = dict(step.uploads)[staged] + BROKEN_SNIPPET_LINE
    with LoopbackSshd() as sshd:
        el_machine(sshd, fleet.guest(step.machine).os_family, balancer=True)
        upload(sshd, step, replace={staged: broken})
        result = run(sshd, step.create)
        assert result.code == 1, f"a snippet rsyslogd rejects must fail the step:\n{result}"
        assert f"rsyslogd -N1 rejects the new {RSYSLOG_PATH}" in result.err, str(result)
        assert "no_such_parameter" in result.err, f"the real rsyslogd's own words:\n{result}"
        got = probe(sshd, snippet=f"test -e {RSYSLOG_PATH}", rsyslog="systemctl is-active rsyslog", jobs=JOBS)
        assert got["snippet"][0] == 1, "the rejected snippet is removed again"
        assert got["rsyslog"] == (0, "active\n"), "rsyslog keeps running"
        assert not [j for j in jobs(got["jobs"][1]) if j[1] == "rsyslog.service"], f"rsyslog was touched: {got}"
        # With the rendered snippet uploaded again, the same command converges.
        upload(sshd, step)
        fixed = run(sshd, step.create)
        assert fixed.code == 0 and fixed.last == step.report("create", "changed"), str(fixed)
        assert sshd.read(RSYSLOG_PATH) == dict(step.uploads)[staged]


def test_a_rejected_rsyslog_snippet_leaves_the_working_one_in_place(prod):
    """A node that already logs: a new snippet that rsyslogd rejects must not cost it its logging
    (the working snippet stays byte for byte, rsyslog is not restarted)."""
    require_real_tools()
    fleet, rec = prod
    step = recorded(rec, fleet.load_balancer.primary, "haproxy-install")
    (staged,) = [remote for remote, _ in step.uploads if remote.endswith(RSYSLOG_PATH)]
    good = dict(step.uploads)[staged]
    with LoopbackSshd() as sshd:
        el_machine(sshd, fleet.guest(step.machine).os_family, balancer=True)
        upload(sshd, step)
        assert run(sshd, step.create).code == 0
        before = ok(sshd, f"stat -c %a {RSYSLOG_PATH}; {JOBS}")
        upload(sshd, step, replace={staged: good + BROKEN_SNIPPET_LINE})
        result = run(sshd, step.create)
        assert result.code == 1 and f"rejects the new {RSYSLOG_PATH}; the previous one is back" in result.err, str(
            result
        )
        assert sshd.read(RSYSLOG_PATH) == good
        assert ok(sshd, f"stat -c %a {RSYSLOG_PATH}; {JOBS}") == before, "mode and rsyslog's jobs unchanged"


def test_a_broken_rsyslog_conf_is_not_blamed_on_the_snippet(prod):
    """When rsyslog's own configuration is what rsyslogd -N1 rejects, the step says so (and keeps
    the snippet out), instead of calling the snippet broken."""
    require_real_tools()
    fleet, rec = prod
    step = recorded(rec, fleet.load_balancer.primary, "haproxy-install")
    with LoopbackSshd() as sshd:
        el_machine(sshd, fleet.guest(step.machine).os_family, balancer=True)
        sshd.upload(EL_RSYSLOG_CONF + 'module(load="no_such_module")\n', "/etc/rsyslog.conf")
        upload(sshd, step)
        result = run(sshd, step.create)
        assert result.code == 1, str(result)
        assert f"rejects rsyslog's configuration even without the new {RSYSLOG_PATH}" in result.err, str(result)
        assert "no_such_module" in result.err, str(result)
        assert not sshd.exists(RSYSLOG_PATH)


def test_httpd_on_the_balancer_gives_up_443_https_too(prod):
    """With HTTPS on, mod_ssl's ``Listen 443 https`` moves to 8443 with its protocol, and back."""
    require_real_tools()
    fleet, _ = prod
    lb = fleet.load_balancer.model_copy(
        update={"https": fleet.load_balancer.https.model_copy(update={"enabled": True})}
    )
    rendered = tier.render_install_step(lb, fleet)
    step = Step(
        lb.primary,
        rendered.name,
        as_command(rendered.create),
        as_command(rendered.delete),
        tuple((rendered.staging_path(f), f.content) for f in rendered.uploads),
    )
    ssl_conf = "/etc/httpd/conf.d/ssl.conf"
    with LoopbackSshd() as sshd:
        el_machine(sshd, fleet.guest(lb.primary).os_family, balancer=True)
        ok(sshd, "dnf -y install httpd >/dev/null && systemctl enable --now httpd 2>/dev/null")
        sshd.upload("Listen 443 https\nSSLEngine on\n", ssl_conf)
        upload(sshd, step)
        assert run(sshd, step.create).code == 0
        got = probe(sshd, httpd=f"grep ^Listen {HTTPD_CONF}", ssl=f"grep ^Listen {ssl_conf}")
        assert got["httpd"][1] == "Listen 8080\n" and got["ssl"][1] == "Listen 8443 https\n", got
        assert run(sshd, step.delete).code == 0
        assert sshd.read(ssl_conf) == "Listen 443 https\nSSLEngine on\n"


# -- haproxy-config ----------------------------------------------------------------------------------


def config_script(fleet, *, password: str) -> tuple[str, str]:
    """(create script, sent on stdin behind STDIN_RUNNER; haproxy.cfg) of the config step rendered
    with another stats password and the plan's certificate (pulumi-tls's, as the mocks give it)."""
    key, cert = planned_tls()
    lb = fleet.load_balancer
    step = tier.render_config_step(lb, fleet, stats_password=password, certificate_pem=cert + key)
    return step.create, step.files[0].content


def balancer_with_haproxy(sshd: LoopbackSshd, fleet, rec) -> tuple[Step, Step]:
    """A fresh balancer node after its install step; returns the (install, config) steps."""
    node = fleet.load_balancer.primary
    install, config = recorded(rec, node, "haproxy-install"), recorded(rec, node, "haproxy-config")
    el_machine(sshd, fleet.guest(node).os_family, balancer=True)
    upload(sshd, install)
    assert not config.uploads, "a secret step uploads nothing: its files travel in the script"
    result = run(sshd, install.create)
    assert result.code == 0, f"haproxy-install:\n{result}"
    return install, config


def test_the_recorded_config_command_is_the_secret_render(prod):
    """What the other config tests run besides the recorded text differs only in the candidate."""
    fleet, rec = prod
    command = rec.named(f"{fleet.load_balancer.primary}-haproxy-config", "command:remote:Command")
    assert {"stdin", "delete"} <= command.secret_paths and command.inputs["logging"] == "none"
    assert command.inputs["create"] == command.inputs["update"] == STDIN_RUNNER, "no secret on a command line"
    assert STATS_PASSWORD in command.inputs["stdin"], "the mocks' known password is in the recorded script"
    assert config_script(fleet, password=STATS_PASSWORD)[0] == command.inputs["stdin"]


def test_haproxy_config_is_checked_installed_started_and_reloaded(prod):
    require_real_tools()
    fleet, rec = prod
    _, cfg = config_script(fleet, password=STATS_PASSWORD)
    with LoopbackSshd() as sshd:
        _, step = balancer_with_haproxy(sshd, fleet, rec)
        converge(sshd, step)
        service = "systemctl is-enabled haproxy; systemctl is-active haproxy"
        got = probe(sshd, cfg=f"cat {CONFIG_PATH}", mode=f"stat -c %a {CONFIG_PATH}", service=service, jobs=JOBS)
        assert got["cfg"][1] == cfg and got["mode"][1] == "600\n", "haproxy.cfg is the rendered one, mode 0600"
        assert got["service"][1].split() == ["enabled", "active"], got["service"]
        assert [j for j in jobs(got["jobs"][1]) if j[1] == "haproxy.service"] == [("start", "haproxy.service")], got

        changed, changed_cfg = config_script(fleet, password="an0ther test pass'word")
        result = run(sshd, STDIN_RUNNER, changed)
        assert result.code == 0 and result.last == step.report("create", "changed"), str(result)
        got = probe(sshd, cfg=f"cat {CONFIG_PATH}", jobs=JOBS)
        assert got["cfg"][1] == changed_cfg
        assert jobs(got["jobs"][1])[-1] == ("reload", "haproxy.service"), f"a new config reloads, no restart: {got}"

        undo(sshd, step)
        got = probe(sshd, cfg=f"test -e {CONFIG_PATH}", service=service)
        assert got["cfg"][0] == 1, "delete removes the config (it holds the stats password)"
        assert got["service"][1].split() == ["disabled", "inactive"], got["service"]


def test_a_config_haproxy_rejects_leaves_the_running_balancer_alone(prod, monkeypatch):
    """The template breaking is simulated in the render (the step embeds its files): a line haproxy
    does not know is appended to the rendered haproxy.cfg; the rest of the script is the real one."""
    require_real_tools()
    fleet, rec = prod
    render = tier.render_haproxy_cfg
    monkeypatch.setattr(tier, "render_haproxy_cfg", lambda *a, **k: render(*a, **k) + "    no-such-keyword on\n")
    broken, _ = config_script(fleet, password="an0ther test password")
    with LoopbackSshd() as sshd:
        _, step = balancer_with_haproxy(sshd, fleet, rec)
        assert run(sshd, step.create, step.stdin).code == 0
        state = f"sha256sum {CONFIG_PATH}; stat -c %a {CONFIG_PATH}; {JOBS}; systemctl is-active haproxy"
        before = ok(sshd, state)
        result = run(sshd, STDIN_RUNNER, broken)
        assert result.code == 1, f"haproxy -c must reject the candidate:\n{result}"
        assert "haproxy -c rejects the rendered configuration" in result.err, str(result)
        assert "no-such-keyword" in result.err and "[ALERT]" in result.err, f"haproxy's own words:\n{result}"
        assert ok(sshd, state) == before, "haproxy.cfg byte-identical, haproxy neither reloaded nor restarted"
        assert before.endswith("\nactive\n"), before


# -- web servers -------------------------------------------------------------------------------------


def web_steps(fleet, rec) -> dict[str, tuple]:
    """guest -> (WebServerStep, recorded Step), for every web server of the tier."""
    return {
        w.guest.name: (w, recorded(rec, w.runs_on, w.step.name)) for w in web_server_steps(fleet.load_balancer, fleet)
    }


def web_ports(fleet) -> list[str]:
    return [f"{p}/tcp" for p in sorted({*SEED_FIREWALL_PORTS, fleet.load_balancer.backend_port})]


def test_every_web_server_of_prod_is_covered_here(prod):
    """The tests below name prod's web servers; a new one (say a VirtualBox guest) needs its own."""
    fleet, rec = prod
    kinds = {name: w.guest.type for name, (w, _) in web_steps(fleet, rec).items()}
    assert kinds == COVERED_WEB_SERVERS, kinds


@pytest.mark.parametrize("guest", ["webserver1", "webserver2"])  # kvm, xen: over SSH to the guest
def test_httpd_web_server_over_ssh(prod, guest):
    require_real_tools()
    fleet, rec = prod
    web, step = web_steps(fleet, rec)[guest]
    assert web.over_ssh_to_guest and step.machine == guest
    ((page_path, page),) = [(f.path, f.content) for f in web.files]
    assert step.installed() == {page_path: page} and f"<h1>{guest}</h1>" in page, "the page names the guest"
    ports = web_ports(fleet)
    httpd = "rpm -q httpd >/dev/null; systemctl is-enabled httpd; systemctl is-active httpd"
    with LoopbackSshd() as sshd:
        el_machine(sshd, web.guest.os_family)
        upload(sshd, step)
        converge(sshd, step)
        got = probe(sshd, page=f"cat {page_path}", listen=f"grep ^Listen {HTTPD_CONF}", httpd=httpd, fw=firewall(ports))
        assert got["page"][1] == page, got["page"]
        assert got["listen"][1] == f"Listen {fleet.load_balancer.backend_port}\n", got["listen"]
        assert got["httpd"] == (0, "enabled\nactive\n"), got["httpd"]
        assert got["fw"][1] == opened(ports), got["fw"]
        undo(sshd, step)
        got = probe(sshd, page=f"test -e {page_path}", httpd=httpd, fw=firewall(ports))
        assert got["page"][0] == 1 and got["fw"][1] == "", got
        assert got["httpd"][1] == "disabled\ninactive\n", got["httpd"]


def test_httpd_web_server_in_an_openvz_container(prod):
    """OpenVZ: ``vzctl`` is the stateful fake (tests/fakes/vzctl.py); the inner step runs with the
    container's own files and fake state, so the page and httpd land in the container, not on the host."""
    require_real_tools()
    fleet, rec = prod
    web, step = web_steps(fleet, rec)["webserver3"]
    guest, host = web.guest, fleet.host(web.guest.host)
    ((page_path, page),) = [(f.path, f.content) for f in web.files]
    assert f"<h1>{guest.name}</h1>" in page, "the page names the guest"
    inside = f"vzctl exec2 {guest.ctid} "
    ports = web_ports(fleet)
    httpd = inside + shlex.quote("rpm -q httpd >/dev/null; systemctl is-enabled httpd; systemctl is-active httpd")
    # The guest's own template (the fake knows its release file), so the inner step meets the OS it
    # was rendered for: yum on the default CentOS 7 template.
    create = f"vzctl create {guest.ctid} --ostemplate {guest.ostemplate} --hostname {guest.name}"
    with LoopbackSshd() as sshd:
        el_machine(sshd, host.os_family)
        ok(sshd, role_repos_command("openvz", "el7"))
        ok(sshd, f"yum -y install vzctl >/dev/null && systemctl enable --now vz 2>/dev/null && {create}")
        upload(sshd, step)
        stopped = run(sshd, step.create)
        assert stopped.code == 1 and f"start it (vzctl start {guest.ctid})" in stopped.err, str(stopped)
        ok(sshd, f"vzctl start {guest.ctid}")
        converge(sshd, step)
        # make drift: in sync; with the container stopped by hand, the step says what it cannot read.
        checks = {step.name: step}, host.name, {step.name: step.uploads}
        assert drifted(drift(sshd, *checks)) == {}
        ok(sshd, f"vzctl stop {guest.ctid}")
        assert drifted(drift(sshd, *checks)) == {
            step.name: [
                f"check the web server inside container {guest.ctid} once it runs (the container is not running)"
            ]
        }
        ok(sshd, f"vzctl start {guest.ctid}")
        got = probe(
            sshd,
            page=inside + shlex.quote(f"cat {page_path}"),
            httpd=httpd,
            fw=firewall(ports, inside=inside),
            host=f"test -e {page_path} || rpm -q httpd",
        )
        assert got["page"][1] == page, got["page"]
        assert got["httpd"] == (0, "enabled\nactive\n"), got["httpd"]
        assert got["fw"][1] == opened(ports), got["fw"]
        assert got["host"][0] != 0, "neither the page nor httpd is on the host"
        undo(sshd, step)
        got = probe(
            sshd,
            page=inside + shlex.quote(f"test -e {page_path}"),
            httpd=httpd,
            fw=firewall(ports, inside=inside),
            inner=f"ls {' '.join(step.installed())}",
        )
        assert got["page"][0] == 1 and got["fw"][1] == "", got
        assert got["httpd"][1] == "disabled\ninactive\n", got["httpd"]
        assert got["inner"][0] != 0, f"the inner script is removed from the host: {got['inner']}"


def test_docker_web_server_page_on_its_host(prod):
    """Docker: the step only lays out the page on the Docker host (the guest's httpd container
    mounts it) and labels it for containers under SELinux the persistent way: a ``semanage
    fcontext`` rule for the docker root, applied by ``restorecon``, so the label survives a full
    relabel (simulated as ``restorecon -R -F``: fixfiles / autorelabel at their most thorough),
    which a ``chcon`` label does not.
    ``semanage`` and ``restorecon`` are the fakes (local rules in the fakes' state, labels in the
    ``security.selinux`` xattr); ``stat -c %C`` reads the label for real. Delete keeps the rule
    while another guest's htdocs remain, and removes it with the last. It opens no port (the
    container's address is docker's business)."""
    require_real_tools()
    fleet, rec = prod
    web, step = web_steps(fleet, rec)["backupwebserver"]
    host = fleet.host(web.guest.host)
    ((path, page),) = step.installed().items()
    assert web.files[0].content == page and f"<h1>{web.guest.name}</h1>" in page, "the page names the guest"
    htdocs = path.rsplit("/", 1)[0]
    root = htdocs.split(f"/{web.guest.name}/")[0]
    spec, sibling = f"{root}(/.*)?", f"{root}/some-other-guest/htdocs"
    rules = "semanage fcontext -l -C -n"
    labels = f"stat -c %C {htdocs} {path}"

    def types(got: tuple[int, str]) -> list[str]:
        assert got[0] == 0, got
        return [label.split(":")[2] for label in got[1].split()]

    with LoopbackSshd() as sshd:
        el_machine(sshd, host.os_family)
        sshd.upload(f"SELINUX={host.selinux}\nSELINUXTYPE=targeted\n", "/etc/selinux/config")  # the selinux step's
        assert host.selinux != "disabled", "the label is only set under SELinux"
        ports_before = ok(sshd, "firewall-cmd --permanent --list-ports")
        upload(sshd, step)
        converge(sshd, step)
        got = probe(
            sshd,
            mode="getenforce",
            page=f"cat {path}",
            labels=labels,
            rules=rules,
            ports="firewall-cmd --permanent --list-ports",
            # A full relabel (fixfiles / autorelabel at their most thorough): every label from the rules.
            relabel=f"restorecon -R -F -v {root.rsplit('/', 1)[0]}",
            relabeled=labels,
        )
        assert got["mode"][1] == host.selinux.capitalize() + "\n", got["mode"]
        assert got["page"][1] == page, got["page"]
        assert types(got["labels"]) == ["container_file_t"] * 2, got["labels"]
        assert got["ports"][1] == ports_before, got["ports"]
        assert got["relabel"][0] == 0, got["relabel"]
        assert types(got["relabeled"]) == ["container_file_t"] * 2, f"lost at a relabel: {got['relabeled']}"
        assert [line.split() for line in got["rules"][1].splitlines()] == [
            [spec, "all", "files", "system_u:object_r:container_file_t:s0"]
        ], got["rules"]
        again = run(sshd, step.create)
        assert again.last == step.report("create", "unchanged"), f"create after the relabel:\n{again}"

        # The page edited by hand (in place: its inode and label stay): make drift names the line.
        checks = {step.name: step}, host.name, {step.name: step.uploads}
        assert drifted(drift(sshd, *checks)) == {}
        name = web.guest.name
        ok(sshd, f"sed 's|<h1>{name}</h1>|<h1>defaced</h1>|' {path} > /tmp/page && cat /tmp/page > {path}")
        assert drifted(drift(sshd, *checks)) == {
            step.name: [f"write {path} (content differs: -<h1>defaced</h1>; +<h1>{name}</h1>)"]
        }
        assert "<h1>defaced</h1>" in ok(sshd, f"cat {path}"), "the check left the page as it found it"
        assert run(sshd, step.create).last == step.report("create", "changed")
        assert drifted(drift(sshd, *checks)) == {}

        # Another docker guest's htdocs still use the rule: delete takes this guest's page only.
        ok(sshd, f"mkdir -p {sibling}")
        first = run(sshd, step.delete)
        assert first.code == 0 and first.last == step.report("delete", "changed"), f"delete:\n{first}"
        got = probe(sshd, htdocs=f"test -e {htdocs}", sibling=f"test -d {sibling}", rules=rules)
        assert got["htdocs"][0] == 1 and got["sibling"][0] == 0, got
        assert got["rules"][1].split()[:1] == [spec], f"the rule goes with the last guest: {got['rules']}"

        ok(sshd, f"rm -rf {sibling.rsplit('/', 1)[0]}")
        undo(sshd, step)
        got = probe(sshd, rules=rules, root=f"test -e {root}")
        assert got["rules"] == (0, ""), f"the rule is removed with the last guest: {got['rules']}"
        assert got["root"][0] == 1, f"{root} is removed once empty"


def test_two_docker_web_servers_on_one_host_share_the_selinux_rule_in_parallel():
    """dev's web3 and backup live on one Docker host and the engine runs their page steps at once
    (the first real up, issue 23): both create (then both delete) the same file-context rule, and
    the second `semanage fcontext -a` fails "already defined" unless the steps take the host lock.
    Four rounds, each create pair and delete pair started together over two SSH sessions; the fake
    semanage keeps one policy store (its lock serialises calls as semanage's own does)."""
    require_real_tools()
    config, _ = load_stack("dev")
    rec = run_program(config)
    steps = [recorded(rec, "devbox", f"webserver-{name}") for name in ("web3", "backup")]
    spec = "/var/lib/virtfleet/docker(/.*)?"
    # No check before each create (check_steps): the two run side by side, so one's snapshots would
    # see the other's changes.
    with LoopbackSshd(check_steps=False) as sshd:
        el_machine(sshd, "el9")
        sshd.upload("SELINUX=enforcing\nSELINUXTYPE=targeted\n", "/etc/selinux/config")
        for step in steps:
            upload(sshd, step)
        for round_ in range(4):
            for action in ("create", "delete"):
                with ThreadPoolExecutor(2) as pool:
                    runs = list(pool.map(lambda s, a=action: run(sshd, getattr(s, a)), steps))
                for step, done in zip(steps, runs, strict=True):
                    assert done.code == 0, f"round {round_}, {action} of {step.name}:\n{done}"
                rules = ok(sshd, "semanage fcontext -l -C -n")
                expected = (
                    [[spec, "all", "files", "system_u:object_r:container_file_t:s0"]] if action == "create" else []
                )
                assert [line.split() for line in rules.splitlines()] == expected, (round_, action, rules)
            for step in steps:  # the pages come back for the next round
                upload(sshd, step)
