"""DockerGuest under the Pulumi mocks (L2), and the model's Docker-only rules (L1).

Every stack's Docker guests: image and container on their own host's docker provider, the
container's inputs as ``container_args`` says (the same dictionary the L4 tests hand to a real
dockerd), the tier's page directory mounted read-only; a changed memory limit touches exactly its
own container, a changed page exactly its own page step (the container only mounts the directory).
"""

from __future__ import annotations

import copy

import pytest
from conftest import STACKS, recording

import components.lb.web_servers as web_servers
from components.guests.docker import container_args, image_profile, provider_cpus
from components.model import DockerGuest as DockerGuestModel
from components.model import FleetConfigError, load_fleet
from plan.run import StackConfig, load_stack, run_program

CONTAINER = "docker:index/container:Container"
REMOTE_STEP = "virtfleet:remote:RemoteStep"
COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
COMPONENT = "virtfleet:guest:DockerGuest"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def as_recorded(value):
    """container_args' plain values the way the engine receives them: camelCase keys, numbers as floats."""
    if isinstance(value, dict):
        return {camel(k) if "_" in k else k: as_recorded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_recorded(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def docker_guests(fleet) -> list[DockerGuestModel]:
    return [g for g in fleet.guests if isinstance(g, DockerGuestModel)]


def variant(stack: str, name: str, change) -> tuple:
    """A TEST copy of ``stack`` changed by ``change(values)`` (the committed file is left alone)."""
    config, _ = load_stack(stack)
    values = copy.deepcopy(config.values)
    change(values)
    test_config = StackConfig(name, values, set(config.secret_keys), list(config.placeholders))
    return load_fleet(values, test_config.secret_keys), run_program(test_config)


def changed_resources(before, after) -> dict[str, tuple[dict, dict]]:
    """Resources (by name and type) whose inputs differ between two runs of the same program."""
    old = {(r.type, r.name): r.masked_inputs() for r in before.resources}
    new = {(r.type, r.name): r.masked_inputs() for r in after.resources}
    assert old.keys() == new.keys()
    return {f"{t} {n}": (old[(t, n)], new[(t, n)]) for (t, n) in old if old[(t, n)] != new[(t, n)]}


@pytest.fixture
def runs():
    return {stack: recording(stack) for stack in STACKS}


def test_every_docker_guest_has_one_container_with_container_args_as_inputs(runs):
    for stack, (fleet, rec) in runs.items():
        assert docker_guests(fleet), stack
        for guest in docker_guests(fleet):
            component = rec.named(guest.name, COMPONENT)
            (container,) = [r for r in rec.children(component.urn) if r.type == CONTAINER]
            expected = as_recorded(container_args(guest, fleet))
            inputs = dict(container.inputs)
            # The reference as the stack gives it (known at preview; the provider reads it back as created),
            # and the container waits for its pull.
            assert inputs.pop("image") == guest.image
            image = next(
                r for r in rec.of_type("docker:index/remoteImage:RemoteImage") if r.inputs["name"] == guest.image
            )
            assert image.urn in container.dependencies
            assert {k: inputs[k] for k in expected} == expected, (stack, guest.name)
            assert set(inputs) == set(expected), (stack, sorted(set(inputs) ^ set(expected)))


def test_container_on_the_lan_bridge_limited_and_locked_down(runs):
    for stack, (fleet, rec) in runs.items():
        for guest in docker_guests(fleet):
            inputs = rec.named(guest.name, CONTAINER).inputs
            assert inputs["name"] == inputs["hostname"] == guest.name
            assert inputs["memory"] == guest.memory_mib and inputs["cpus"] == f"{guest.vcpus}.0"
            # The provider's default network_mode: created on docker0, then moved with its address.
            assert "networkMode" not in inputs
            assert inputs["networksAdvanced"] == [{"name": guest.network.bridge, "ipv4Address": str(guest.network.ip)}]
            assert inputs["privileged"] is False and inputs["restart"] == "unless-stopped"
            assert inputs["logOpts"]["max-size"] and inputs["logOpts"]["max-file"]
            # Every stack's docker guests run httpd: read-only root, all capabilities but httpd's dropped.
            assert inputs["readOnly"] is True and inputs["capabilities"]["drops"] == ["ALL"], (stack, guest.name)
            assert "CAP_NET_BIND_SERVICE" in inputs["capabilities"]["adds"]  # dockerd's spelling
            assert "SYS_ADMIN" not in inputs["capabilities"]["adds"]


def test_web_servers_mount_the_page_directory_the_tier_writes(runs):
    for stack, (fleet, rec) in runs.items():
        lb = fleet.load_balancer
        for guest in docker_guests(fleet):
            assert guest.name in (*lb.backends, *lb.backups), (stack, guest.name)
            inputs = rec.named(guest.name, CONTAINER).inputs
            step = web_servers.web_server_step(guest, lb, fleet).step
            page_dir = step.files[0].path.rsplit("/", 1)[0]
            assert inputs["volumes"] == [
                {"hostPath": page_dir, "containerPath": image_profile(guest.image).docroot, "readOnly": True}
            ]
            tests = inputs["healthcheck"]["tests"]
            assert tests[:3] == ["CMD", "bash", "-c"] and f"GET {lb.health_check.path} " in tests[3]
            # The tier's page step runs after the container exists, on the same host.
            command = rec.named(f"{guest.host}-webserver-{guest.name}", "command:remote:Command")
            assert rec.named(guest.name, CONTAINER).urn in command.dependencies


def test_images_are_pulled_once_per_host_and_kept_locally(runs):
    fleet, rec = runs["dev"]
    images = rec.of_type(IMAGE)
    assert len(images) == 1 and len(docker_guests(fleet)) == 2, "web3 and backup share httpd:2.4 on devbox"
    for stack, (fleet, rec) in runs.items():
        for image in rec.of_type(IMAGE):
            assert image.inputs["keepLocally"] is True
            host = rec.by_urn()[image.parent]
            assert host.type == "virtfleet:host:HypervisorHost"
            assert image.provider.startswith(rec.named(f"{host.name}-docker", "pulumi:providers:docker").urn + "::")
        for guest in docker_guests(fleet):
            container = rec.named(guest.name, CONTAINER)
            host_urn = rec.named(guest.host, "virtfleet:host:HypervisorHost").urn
            (image,) = [i for i in rec.of_type(IMAGE) if (i.inputs["name"], i.parent) == (guest.image, host_urn)]
            assert image.urn in container.dependencies
            assert rec.named(f"{guest.host}-docker-{guest.network.bridge}", NETWORK).urn in container.dependencies
            provider = rec.named(f"{guest.host}-docker", "pulumi:providers:docker")
            assert container.provider.startswith(provider.urn + "::"), (stack, guest.name)


def test_a_digest_pin_is_pulled_as_written():
    digest = "httpd:2.4@sha256:" + "ab" * 32

    def pin(values):
        next(g for g in values["guests"] if g["name"] == "web3")["image"] = digest

    _, rec = variant("dev", "dev-pinned", pin)
    names = sorted(i.inputs["name"] for i in rec.of_type(IMAGE))
    assert names == ["httpd:2.4", digest]
    assert image_profile(digest) is not None, "a pinned httpd is still httpd"


def test_docker_guests_are_no_longer_pending_nor_warned_about(runs):
    for stack, (fleet, rec) in runs.items():
        assert not set(rec.outputs["pendingGuests"]) & {g.name for g in docker_guests(fleet)}, stack
        assert not any("docker guests are not deployable" in w for w in rec.warnings), stack


def test_a_changed_memory_limit_changes_exactly_its_own_container_between_its_drain_and_ready(runs):
    """web3 is a web server of the rolled tier: its step carries the guest's definition, so it runs again
    (its page copied again too), and with it its drain and ready steps on the balancer; the container is
    recreated between them. Nothing of another guest changes."""
    _, base = runs["dev"]

    def grow(values):
        next(g for g in values["guests"] if g["name"] == "web3")["memoryMiB"] = 384

    _, rec = variant("dev", "dev", grow)
    changed = changed_resources(base, rec)
    roll = {f"{kind} devbox-{step}-web3" for kind in (REMOTE_STEP, COMMAND) for step in ("drain", "webserver", "ready")}
    page = f"{COPY} devbox-webserver-web3-file-var-lib-virtfleet-docker-web3-htdocs-index.html"
    assert set(changed) == {f"{CONTAINER} web3", page, *roll}, list(changed)
    old, new = changed[f"{CONTAINER} web3"]
    assert {k for k in old if old[k] != new[k]} == {"memory", "memorySwap"}
    assert new["memory"] == 384


def test_a_changed_page_reruns_exactly_its_own_page_step(runs, monkeypatch):
    _, base = runs["dev"]
    original = web_servers.page_files

    def edited(guest, lb, fleet, docroot):
        files = original(guest, lb, fleet, docroot)
        if guest.name != "web3":
            return files
        return (type(files[0])(files[0].path, files[0].content + "<!-- edited -->\n"), *files[1:])

    monkeypatch.setattr(web_servers, "page_files", edited)
    _, rec = variant("dev", "dev", lambda values: None)
    changed = set(changed_resources(base, rec))
    # The host's page directory is bind-mounted: the container itself stays as it is. The roll takes
    # web3 out of rotation on the balancer around its step (drain, ready: they carry its digest).
    assert changed == {
        "virtfleet:remote:RemoteStep devbox-drain-web3",
        "command:remote:Command devbox-drain-web3",
        "virtfleet:remote:RemoteStep devbox-ready-web3",
        "command:remote:Command devbox-ready-web3",
        "virtfleet:remote:RemoteStep devbox-webserver-web3",
        "command:remote:Command devbox-webserver-web3",
        "command:remote:CopyToRemote devbox-webserver-web3-file-var-lib-virtfleet-docker-web3-htdocs-index.html",
        "virtfleet:render:RenderedFiles web3-webserver-files",
    }, changed


def dev_with(change) -> dict:
    config, _ = load_stack("dev")
    values = copy.deepcopy(config.values)
    change(next(g for g in values["guests"] if g["name"] == "web3"))
    return values


def problems(values) -> list[str]:
    """The problems about web3 (guests[2]); the tier then also finds web3 missing, which is beside the point."""
    with pytest.raises(FleetConfigError) as err:
        load_fleet(values, {"sshPrivateKey"})
    return [str(p) for p in err.value.problems if p.path.startswith("virtfleet:guests[2]")]


def test_paused_is_refused_naming_the_key():
    (problem,) = problems(dev_with(lambda g: g.update(powerState="paused")))
    assert problem.startswith("virtfleet:guests[2].powerState: ") and "paused is not supported" in problem


def test_autostart_false_means_restart_no_and_contradictions_are_refused():
    fleet = load_fleet(dev_with(lambda g: g.update(autostart=False)), {"sshPrivateKey"})
    assert fleet.guest("web3").restart == "no"
    (problem,) = problems(dev_with(lambda g: g.update(autostart=False, restart="always")))
    assert problem.startswith("virtfleet:guests[2]: ") and "restart: always" in problem


def test_stopped_containers_are_created_but_not_started():
    values = dev_with(lambda g: g.update(powerState="stopped"))
    fleet = load_fleet(values, {"sshPrivateKey"})
    args = container_args(fleet.guest("web3"), fleet)
    assert args["start"] is False and args["must_run"] is False
    assert container_args(fleet.guest("backup"), fleet)["start"] is True


def test_an_image_without_profile_keeps_a_writable_root_and_drops_the_risky_capabilities():
    values = dev_with(lambda g: g.update(image="registry.example:5000/team/app:1.0"))
    fleet = load_fleet(values, {"sshPrivateKey"})
    args = container_args(fleet.guest("web3"), fleet)
    assert args["read_only"] is False and "tmpfs" not in args
    assert args["capabilities"] == {"drops": ["CAP_NET_RAW", "CAP_MKNOD", "CAP_AUDIT_WRITE"]}


def test_protect_is_the_containers_protect_option(runs):
    """prod protects its Docker backup (the policy pack requires it in prod); dev's containers are not."""
    fleet, rec = runs["prod"]
    assert rec.named("backupwebserver", CONTAINER).protect is True
    fleet, rec = runs["dev"]
    assert {rec.named(g.name, CONTAINER).protect for g in docker_guests(fleet)} == {False}


@pytest.mark.parametrize(
    ("vcpus", "read_back"),
    [
        (1, "1.0"),
        (2, "2.0"),
        (9, "9.0"),
        (10, "10."),
        (11, "11.0"),
        (20, "20."),
        (100, "100."),
        (101, "101."),
        (111, "111.0"),
    ],
)
def test_cpus_are_sent_in_the_form_the_provider_reads_back(vcpus, read_back):
    """pulumi-docker stores NanoCPUs as its nanoInt64ToDecimalString prints them (written out here from
    its source, not computed), and cpus is ForceNew: "1" against "1.0" replaced every container at
    every up (the first real up, issue 23)."""
    assert provider_cpus(vcpus) == read_back
