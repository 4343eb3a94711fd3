"""L4: the dev stack's Docker web server web3 as a real container in a real dockerd (Debian's
docker.io), at its own LAN address on the host's bridge, inside network namespaces.

The lab: ``devbox`` (the dev stack's Docker host) is a namespace whose eth0 is a port of its
``br0``, which carries the host's address, as the bridge step leaves a real host; dockerd runs
there (tests/support/dockerd.py). The image is built locally from Debian's busybox-static (plus
bash-static, which the health check uses as the httpd image's bash) and tagged as the stack's
image name (httpd:2.4); network and container are created from ``docker_network_args`` and
``container_args``, the dictionaries the components hand to pulumi-docker, through the Engine
API the provider calls. The page is the tier's own, written where the tier's step writes it.
The client is another namespace on the lab's switch. No internet; bounded waits only.
"""

from __future__ import annotations

import pytest
from support.dockerd import docker_web_server, wait_healthy
from support.netlab import NetLab, new_prefix, wait_until

from components.guests.docker import capability_names, image_profile
from plan.run import load_stack

pytestmark = pytest.mark.real

GUEST = "web3"
HEALTHY_TIMEOUT_S = 45.0  # interval 10s; the first check runs one interval after the start
SERVE_TIMEOUT_S = 15.0
CAP_BITS = {"CHOWN": 0, "KILL": 5, "SETGID": 6, "SETUID": 7, "NET_BIND_SERVICE": 10}


class Lab:
    def __init__(self, lab, fleet, dockerd, container_id, page):
        self.lab, self.fleet, self.dockerd, self.container_id, self.page = lab, fleet, dockerd, container_id, page
        self.guest = fleet.guest(GUEST)
        self.client = lab.machines["client"]
        self.url = f"http://{self.guest.network.ip}/"

    def inspect(self) -> dict:
        return self.dockerd.client.api.inspect_container(self.container_id)

    def serves_page(self) -> bool:
        response = self.client.http_get(self.url)
        return response.status == 200 and response.body == self.page


@pytest.fixture(scope="module")
def docker_lab():
    _, fleet = load_stack("dev")
    guest = fleet.guest(GUEST)
    subnet = next(h for h in fleet.hosts if h.name == guest.host).bridge(guest.network.bridge).address.network
    with NetLab(new_prefix(), str(subnet)) as lab:
        lab.add_machine("client", ["10.10.0.50/24"])
        with docker_web_server(lab, fleet, GUEST) as (dockerd, container_id, page):
            yield Lab(lab, fleet, dockerd, container_id, page)


def test_serves_the_tiers_page_at_its_lan_address(docker_lab):
    assert wait_until(docker_lab.serves_page, SERVE_TIMEOUT_S, 0.2), docker_lab.client.http_get(docker_lab.url)
    assert f"<h1>{GUEST}</h1>" in docker_lab.page


def test_inspect_shows_the_limits_and_the_lockdown(docker_lab):
    info = docker_lab.inspect()
    host_config = info["HostConfig"]
    guest = docker_lab.guest
    assert host_config["Memory"] == guest.memory_mib * 1024 * 1024
    assert host_config["MemorySwap"] == guest.memory_mib * 1024 * 1024
    assert host_config["NanoCpus"] == guest.vcpus * 10**9
    assert host_config["CapDrop"] == ["ALL"]
    assert sorted(host_config["CapAdd"]) == sorted(capability_names(image_profile(guest.image).capabilities))
    assert host_config["Privileged"] is False and host_config["ReadonlyRootfs"] is True
    # Created on the default network, then moved to the LAN one with its address, as pulumi-docker does
    # (naming the LAN network as network mode lost the address: the first real up, issue 23).
    assert host_config["NetworkMode"] == "bridge"
    assert host_config["RestartPolicy"]["Name"] == guest.restart
    assert host_config["LogConfig"]["Config"]["max-size"]
    network = info["NetworkSettings"]["Networks"]
    assert list(network) == [guest.network.bridge], "the LAN network is its only one"
    assert network[guest.network.bridge]["IPAddress"] == str(guest.network.ip)
    (mount,) = info["Mounts"]
    assert mount["Source"] == f"/var/lib/virtfleet/docker/{GUEST}/htdocs" and mount["RW"] is False


def test_the_running_process_holds_only_the_profiles_capabilities(docker_lab):
    container = docker_lab.dockerd.client.containers.get(docker_lab.container_id)
    status = container.exec_run(["busybox", "cat", "/proc/1/status"]).output.decode()
    bounding = int(next(line for line in status.splitlines() if line.startswith("CapBnd:")).split()[1], 16)
    wanted = sum(1 << CAP_BITS[c] for c in image_profile(docker_lab.guest.image).capabilities)
    assert bounding == wanted, f"{bounding:#x} != {wanted:#x}"
    memory = container.exec_run(["busybox", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).output
    if memory.strip().isdigit():  # cgroup v1 (this lab); v2 hosts show memory.max instead
        assert int(memory) == docker_lab.guest.memory_mib * 1024 * 1024


def test_root_and_page_are_read_only_the_tmpfs_is_writable(docker_lab):
    container = docker_lab.dockerd.client.containers.get(docker_lab.container_id)
    docroot = image_profile(docker_lab.guest.image).docroot
    assert container.exec_run(["busybox", "touch", "/etc-new"]).exit_code != 0
    assert container.exec_run(["busybox", "touch", f"{docroot}/new.html"]).exit_code != 0
    assert container.exec_run(["busybox", "touch", "/tmp/scratch"]).exit_code == 0


def test_a_changed_page_is_served_without_touching_the_container(docker_lab):
    path = f"/var/lib/virtfleet/docker/{GUEST}/htdocs/index.html"
    edited = docker_lab.page.replace("</body>", "<p>edited</p>\n</body>")
    started = docker_lab.inspect()["State"]["StartedAt"]
    docker_lab.dockerd.write_host_file(path, edited)
    try:
        assert wait_until(lambda: docker_lab.client.http_get(docker_lab.url).body == edited, SERVE_TIMEOUT_S, 0.2)
        assert docker_lab.inspect()["State"]["StartedAt"] == started
    finally:
        docker_lab.dockerd.write_host_file(path, docker_lab.page)


def test_the_health_check_turns_healthy(docker_lab):
    status = wait_healthy(docker_lab.dockerd.client, docker_lab.container_id, HEALTHY_TIMEOUT_S)
    assert status == "healthy", docker_lab.inspect()["State"].get("Health")


def test_a_dockerd_restart_brings_the_container_back(docker_lab):
    """unless-stopped: dockerd stops the container on its way down and starts it again on its way up."""
    docker_lab.dockerd.stop(remove_containers=False)
    assert docker_lab.client.http_get(docker_lab.url, timeout=1).status == 0, "down with dockerd"
    docker_lab.dockerd.start()
    assert wait_until(docker_lab.serves_page, SERVE_TIMEOUT_S, 0.2), docker_lab.client.http_get(docker_lab.url)
    state = docker_lab.inspect()["State"]
    assert state["Running"] and state["Restarting"] is False
    assert docker_lab.inspect()["Id"] == docker_lab.container_id, "the same container, not a new one"
