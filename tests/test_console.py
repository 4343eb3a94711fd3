"""The console role (Cockpit, the web console the seed's GUIs became) on prod's kvm1 (el9) and xen1 (el7).

L2: what the program records (a secret step, the consoles' URLs). L4: the recorded role-console and
console commands over SSH against the EL fakes (tests/fakes: dnf/yum, rpm, systemctl, firewall-cmd with
rich rules, restorecon): packages, the socket, the drop-in, cockpit.conf, the certificate's owner, mode
and label, root kept out, the rich rules for exactly ``console.allowFrom`` and cockpit out of the
default zone; a second run changes nothing; delete puts the host back. Then the real thing: Debian's
own cockpit-ws serves the files the step installed, in a lab namespace at kvm1's address, with the
firewall the step left in the fakes' state applied as nftables rules in that namespace (firewalld
cannot run here: this translation of its default zone and rich rules stands in for it), and a
headless Chromium (Debian's) loads the login page over TLS from an allowed address, trusting only the
stack's certificate, and saves a screenshot; an address outside ``allowFrom`` is refused.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import edited_fleet, recording
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from support.haproxy_check import certificate_pem
from support.netlab import NetLab, new_prefix, wait_until
from support.sshd import LoopbackSshd
from support.step_run import RecordedStep, create, run
from support.tools import require_root, require_tool

from components.hosts.console import (
    COCKPIT_CONF,
    PAM_FILE,
    PAM_LISTFILE,
    SOCKET_DROPIN,
    render_cockpit_conf,
    render_console_step,
    render_socket_dropin,
    split_pem,
)
from components.hosts.host_steps import host_steps
from components.model import CONSOLE_PORT
from components.remote.scripts import STDIN_RUNNER
from lab.view import EL_RELEASE

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "command:remote:Command"
CERT_DIR = "/etc/cockpit/ws-certs.d"
SCREENSHOT = ROOT / "build" / "console" / "login.png"
NARROW = ["10.0.0.0/26", "10.0.0.64/26"]

# What the console role may change on a host, read in one SSH session: delete must restore each.
PROBES = {
    "packages": "rpm -qa --qf '%{NAME}\\n' | sort",
    "units": "cat /var/lib/virtfleet-fakes/systemd.json",
    "services": "firewall-cmd --permanent --list-services; firewall-cmd --list-services",
    "rich rules": "firewall-cmd --permanent --list-rich-rules; echo --; firewall-cmd --list-rich-rules",
    "cockpit files": "find /etc/cockpit /etc/systemd/system /var/lib/virtfleet -xdev -type f 2>/dev/null"
    " | sort | xargs -r sha256sum",
    "pam": f"cat {PAM_FILE} 2>/dev/null || true",
}


def host_state(sshd: LoopbackSshd) -> dict[str, str]:
    results = sshd.run_each(list(PROBES.values()))
    failed = [(name, r.stderr) for name, r in zip(PROBES, results, strict=True) if r.returncode]
    assert not failed, failed
    state = {name: r.stdout for name, r in zip(PROBES, results, strict=True)}
    units = json.loads(state["units"])["units"]
    state["units"] = json.dumps(
        {u: (s["enabled"], s["active"]) for u, s in sorted(units.items()) if s["enabled"] or s["active"]}
    )
    return state


def steps_of(host: str) -> tuple[RecordedStep, RecordedStep]:
    _, rec = recording("prod")
    return (
        RecordedStep.of(rec.named(f"{host}-role-console", COMMAND), host),
        RecordedStep.of(rec.named(f"{host}-console", COMMAND), host),
    )


def el_host(sshd: LoopbackSshd, family: str) -> None:
    sshd.upload(EL_RELEASE[family], "/etc/redhat-release")


# -- L2: what the program records ---------------------------------------------------------------------


def test_the_console_step_is_secret_and_every_console_has_its_url():
    fleet, rec = recording("prod")
    consoles = [h for h in fleet.hosts if h.console is not None]
    assert [h.name for h in consoles] == ["kvm1", "xen1"]
    assert rec.outputs["consoleUrls"] == {h.name: f"https://{h.address}:{CONSOLE_PORT}/" for h in consoles}
    for host in consoles:
        command = rec.named(f"{host.name}-console", COMMAND)
        assert command.inputs["create"] == command.inputs["update"] == STDIN_RUNNER, "no key on a command line"
        assert {"stdin", "delete"} <= command.secret_paths and command.inputs["logging"] == "none"
        assert "-----BEGIN PRIVATE KEY-----" in command.inputs["stdin"]
        # After the last step that prepares the host (the chain runs role-console before it).
        last = rec.named(f"{host.name}-{host_steps(host, fleet)[-1].name}", COMMAND)
        assert last.urn in command.dependencies
        assert "role-console" in [s.name for s in host_steps(host, fleet)]
    # A host without the role has neither the step nor a URL.
    assert not [c for c in rec.of_type(COMMAND) if c.name == "ovz1-console"]


def test_cockpit_conf_names_host_and_stack_and_binds_the_management_address():
    fleet, _ = recording("prod")
    kvm1 = fleet.host("kvm1")
    assert render_cockpit_conf(kvm1, fleet, "prod").splitlines()[1:] == [
        "[WebService]",
        "LoginTitle = kvm1 (stack prod)",
        "Origins = https://10.0.0.2:9090 https://kvm1.packt.co.uk:9090",
        "AllowUnencrypted = false",
        "",
        "[Session]",
        "IdleTimeout = 10",
    ]
    assert "ListenStream=\nListenStream=10.0.0.2:9090\nFreeBind=yes\n" in render_socket_dropin(kvm1)
    titled = edited_fleet("prod", lambda v: v["hosts"][0]["console"].update(title="Ops console: kvm1 #1 ; [x]"))
    assert "LoginTitle = Ops console: kvm1 #1 ; [x]\n" in render_cockpit_conf(titled.host("kvm1"), titled, "prod")


# -- L4: the steps over SSH against the EL fakes ------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize(("host_name", "family"), [("kvm1", "el9"), ("xen1", "el7")])
def test_the_console_is_installed_locked_and_undone(host_name, family):
    require_root()
    require_tool("openssl")
    fleet, _ = recording("prod")
    host = fleet.host(host_name)
    role, console = steps_of(host_name)
    with LoopbackSshd() as sshd:
        el_host(sshd, family)
        before = host_state(sshd)
        assert ("cockpit" in before["services"].split()) is (family == "el9"), "EL9 opens cockpit to everyone"
        create(sshd, role)
        first = create(sshd, console)
        assert "changed: service cockpit closed to everyone (permanent)" in first.out or family == "el7", first
        again = create(sshd, console, "unchanged")
        assert again.changes == [], again

        packages = set(before["packages"].split()) ^ set(host_state(sshd)["packages"].split())
        assert packages == {"cockpit", "cockpit-ws"} | ({"cockpit-machines"} if host_name == "kvm1" else set())
        units = json.loads(host_state(sshd)["units"])
        assert units["cockpit.socket"] == [True, True]
        assert sshd.read(SOCKET_DROPIN) == render_socket_dropin(host)
        assert sshd.read(COCKPIT_CONF) == render_cockpit_conf(host, fleet, "prod")
        # The certificate: el9 splits chain and key (cockpit 286+), el7's cockpit 195 reads one file.
        files = {"el9": {"50-virtfleet.cert": "644 root:root", "50-virtfleet.key": "640 root:cockpit-ws"},
                 "el7": {"50-virtfleet.cert": "640 root:cockpit-ws"}}[family]  # fmt: skip
        listing = sshd.run(f"cd {CERT_DIR} && stat -c '%n %a %U:%G %C' *", check=True).stdout.splitlines()
        label = {"el9": "cert_t", "el7": "etc_t"}[family]  # EL9's cockpit policy module; EL7 has no rule there
        assert listing == [f"{name} {mode} system_u:object_r:{label}:s0" for name, mode in sorted(files.items())]
        key_file = f"{CERT_DIR}/50-virtfleet.{'key' if family == 'el9' else 'cert'}"
        assert "-----BEGIN PRIVATE KEY-----" in sshd.read(key_file)
        # Root may not log in: in disallowed-users, which cockpit's PAM stack checks.
        assert "root" in sshd.read("/etc/cockpit/disallowed-users").splitlines()
        pam = sshd.read(PAM_FILE).splitlines()
        listfile = [line for line in pam if "pam_listfile.so" in line]
        if family == "el7":  # cockpit 195 has none: the step's, first in the account stack
            assert listfile == [PAM_LISTFILE], pam
            assert pam.index(PAM_LISTFILE) == next(i for i, line in enumerate(pam) if line.startswith("account"))
        else:  # EL9's cockpit-ws checks disallowed-users itself: its line, and no second one
            assert len(listfile) == 1 and listfile[0] != PAM_LISTFILE and "disallowed-users" in listfile[0], pam
        # The firewall: exactly allowFrom, runtime and permanent, and cockpit in no zone-wide rule.
        rules = [rule(network) for network in host.console.allow_from]
        assert host_state(sshd)["rich rules"] == "\n".join(rules) + "\n--\n" + "\n".join(rules) + "\n"
        assert "cockpit" not in host_state(sshd)["services"].split()

        # delete, twice: the host as it was (the group cockpit-ws stays: rpm never removes groups)
        for step in (console, role):
            gone = run(sshd, step.delete, step.stdin)
            assert gone.code == 0 and gone.last == step.report("delete", "changed"), str(gone)
            again = run(sshd, step.delete, step.stdin)
            assert again.code == 0 and again.last == step.report("delete", "unchanged"), str(again)
        after = host_state(sshd)
        for key in PROBES:
            if key != "units":
                assert after[key] == before[key], (key, before[key], after[key])
        assert "cockpit.socket" not in json.loads(after["units"])


@pytest.mark.real
def test_a_foreign_certificate_is_refused_and_allow_from_changes_follow():
    require_root()
    require_tool("openssl")
    fleet, _ = recording("prod")
    host = fleet.host("kvm1")
    role, console = steps_of("kvm1")
    with LoopbackSshd() as sshd:
        el_host(sshd, "el9")
        create(sshd, role)
        create(sshd, console)
        installed = host_state(sshd)
        # Another certificate with the planned key: the step stops before touching anything.
        planned_chain, planned_key = split_pem(console.stdin)
        other_chain, _ = split_pem(certificate_pem("kvm1.packt.co.uk", "10.0.0.2"))
        mismatched = render_console_step(host, fleet, "prod", certificate_pem=other_chain + planned_key)
        refused = run(sshd, STDIN_RUNNER, mismatched.create)
        assert refused.code == 1, str(refused)
        assert "does not belong to its certificate; the console is unchanged" in refused.err
        assert host_state(sshd) == installed
        # A narrower allowFrom: the old rule goes, the new ones come, others' rules stay.
        others = 'rule family="ipv4" source address="192.0.2.0/24" service name="ssh" accept'
        sshd.run(f"firewall-cmd -q --permanent --add-rich-rule='{others}'", check=True)
        narrow = edited_fleet("prod", lambda v: v["hosts"][0]["console"].update(allowFrom=NARROW))
        changed = render_console_step(narrow.host("kvm1"), narrow, "prod", certificate_pem=planned_chain + planned_key)
        result = run(sshd, STDIN_RUNNER, changed.create)
        assert result.code == 0 and result.last == console.report("create", "changed"), str(result)
        permanent = sshd.run("firewall-cmd --permanent --list-rich-rules", check=True).stdout.splitlines()
        assert sorted(permanent) == sorted([others, *map(rule, NARROW)])
        # At runtime only the console's rules (the ssh rule above was added permanently only).
        runtime = sshd.run("firewall-cmd --list-rich-rules", check=True).stdout.splitlines()
        assert sorted(runtime) == sorted(map(rule, NARROW))


# -- the real cockpit-ws, its firewall as nftables, a real browser ------------------------------------

# firewalld's services the default zone may hold, as ports (firewalld's service definitions).
SERVICE_PORTS = {"ssh": "22", "cockpit": "9090", "dhcpv6-client": None}


def nft_ruleset(state: dict) -> str:
    """The runtime default zone of the fakes' firewalld as nftables: what firewalld would install
    (established traffic and loopback, the zone's services and ports, its rich rules, then reject)."""
    zone = state["runtime"][state["default_zone"]]
    lines = ["ct state established,related accept", "iif lo accept"]
    for rule in zone.get("rich_rules", []):
        match = re.fullmatch(r'rule family="ipv4" source address="([\d./]+)" service name="([\w-]+)" accept', rule)
        assert match, f"a rich rule this translation does not know: {rule}"
        lines.append(f"ip saddr {match[1]} tcp dport {SERVICE_PORTS[match[2]]} accept")
    for service in zone["services"]:
        if SERVICE_PORTS.get(service):
            lines.append(f"tcp dport {SERVICE_PORTS[service]} accept")
    for port in zone["ports"]:
        number, proto = port.split("/")
        lines.append(f"{proto} dport {number} accept")
    lines.append("reject with icmpx admin-prohibited")
    body = "\n    ".join(lines)
    chain = "type filter hook input priority 0; policy accept;"
    return f"table inet virtfleet_firewalld {{\n  chain input {{\n    {chain}\n    {body}\n  }}\n}}\n"


def rule(network: str) -> str:
    return f'rule family="ipv4" source address="{network}" service name="cockpit" accept'


def spki_sha256(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@pytest.mark.real
def test_the_real_cockpit_serves_the_stacks_console_to_allowed_networks_only():
    require_root()
    for tool in ("openssl", "nft", "chromium", "curl"):
        require_tool(tool)
    cockpit_ws = Path("/usr/lib/cockpit/cockpit-ws")
    if not cockpit_ws.exists():
        require_tool("cockpit-ws")  # skips (fails with REQUIRE_REAL_TOOLS) naming it
    # kvm1's console open to the first half of the LAN only: 10.0.0.50 may, 10.0.0.200 may not.
    fleet = edited_fleet("prod", lambda v: v["hosts"][0]["console"].update(allowFrom=["10.0.0.0/25"]))
    host = fleet.host("kvm1")
    pem = certificate_pem("kvm1.packt.co.uk", "10.0.0.2")
    step = render_console_step(host, fleet, "prod", certificate_pem=pem)
    role, _ = steps_of("kvm1")
    with NetLab(new_prefix(), "10.0.0.0/24") as lab:
        kvm1 = lab.add_machine("kvm1", ["10.0.0.2/24"])
        admin = lab.add_machine("admin", ["10.0.0.50/24"])
        outsider = lab.add_machine("outsider", ["10.0.0.200/24"])
        with LoopbackSshd(netns=kvm1.namespace) as sshd:
            el_host(sshd, "el9")
            create(sshd, role)
            result = run(sshd, STDIN_RUNNER, step.create)
            assert result.code == 0 and result.last == "virtfleet: kvm1/console (create): changed", str(result)
            # What the step installed, as cockpit-ws reads it ($XDG_CONFIG_DIRS/cockpit/...).
            config = lab.tmp / "cockpit-config"
            (config / "cockpit" / "ws-certs.d").mkdir(parents=True)
            for path in (COCKPIT_CONF, f"{CERT_DIR}/50-virtfleet.cert", f"{CERT_DIR}/50-virtfleet.key"):
                (config / path.removeprefix("/etc/")).write_text(sshd.read(path))
            listen = re.search(r"^ListenStream=(\S+):(\d+)$", sshd.read(SOCKET_DROPIN), re.M)
            firewall = json.loads(sshd.read("/var/lib/virtfleet-fakes/firewalld.json"))
        ruleset = nft_ruleset(firewall)
        subprocess.run(["ip", "netns", "exec", kvm1.namespace, "nft", "-f", "-"], input=ruleset, text=True, check=True)
        ws = kvm1.popen(
            ["env", f"XDG_CONFIG_DIRS={config}", str(cockpit_ws), "--address", listen[1], "--port", listen[2]],
            label="cockpit-ws",
        )
        assert wait_until(lambda: CONSOLE_PORT in kvm1.listening(), 15), kvm1.log_of(ws)

        # From the admin network: TLS with exactly the stack's certificate, the rendered title.
        cafile = lab.tmp / "stack-cert.pem"
        cafile.write_text(pem.split("-----BEGIN PRIVATE KEY-----")[0])
        page = admin.run(
            ["curl", "-sS", "--max-time", "10", "--cacert", str(cafile), "https://10.0.0.2:9090/"], check=False
        )
        assert page.returncode == 0, page.stderr + kvm1.log_of(ws)
        assert '"title":"kvm1 (stack prod)"' in page.stdout
        s_client = ["openssl", "s_client", "-connect", "10.0.0.2:9090", "-servername", "kvm1.packt.co.uk"]
        served = admin.run(s_client, input="", timeout=20, check=False).stdout
        served_pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", served, re.S)[0]
        assert spki_sha256(served_pem) == spki_sha256(pem), "the console serves the stack's certificate"

        # From outside allowFrom: the firewall refuses (firewalld's reject: the connection fails at once),
        # and it is the rules that refuse: without them the same client reaches cockpit.
        outside = ["curl", "-sS", "--max-time", "5", "-k", "-o", "/dev/null", "https://10.0.0.2:9090/"]
        refused = outsider.run(outside, check=False)
        assert refused.returncode == 7 and "Couldn't connect to server" in refused.stderr, refused
        nft = ["ip", "netns", "exec", kvm1.namespace, "nft"]
        subprocess.run([*nft, "delete", "table", "inet", "virtfleet_firewalld"], check=True)
        assert outsider.run(outside, check=False).returncode == 0
        subprocess.run([*nft, "-f", "-"], input=ruleset, text=True, check=True)
        assert outsider.run(outside, check=False).returncode == 7

        # A real browser, trusting only the stack's key (an interstitial would show in the screenshot).
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        profile = lab.tmp / "chromium-profile"
        shot = lab.tmp / "login.png"
        browser = admin.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--ignore-certificate-errors-spki-list={spki_sha256(pem)}",
             "--window-size=1200,800", "--virtual-time-budget=8000", f"--screenshot={shot}",
             "https://10.0.0.2:9090/"],
            timeout=120, check=False,
        )  # fmt: skip
        assert browser.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, browser.stderr[-2000:]
        shutil.copy(shot, SCREENSHOT)
        dom = admin.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", f"--ignore-certificate-errors-spki-list={spki_sha256(pem)}",
             "--virtual-time-budget=8000", "--dump-dom", "https://10.0.0.2:9090/"],
            timeout=120, check=False,
        )  # fmt: skip
        assert "kvm1 (stack prod)" in dom.stdout and 'id="login-user-input"' in dom.stdout, dom.stdout[-2000:]
        kvm1.stop(ws)
