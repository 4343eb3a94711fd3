"""What differs between EL7 and EL9 hosts and guests, in one table (not if-chains in templates)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OsFamily:
    name: str
    package_manager: str  # yum | dnf
    network_backend: str  # network-scripts | NetworkManager
    cloud_image: str  # default GenericCloud qcow2 for guests of this family
    kickstart_version: str  # pykickstart version for the seed's installer path
    os_variant: str  # libosinfo id, as virt-install --os-variant
    httpd_package: str
    python: str
    # Cockpit's certificate: el9's cockpit (286+) wants the key in NAME.key beside NAME.cert; el7's
    # (195) reads one .cert holding the chain and then the key.
    cockpit_key_file: bool


OS_FAMILIES: dict[str, OsFamily] = {
    "el7": OsFamily(
        name="el7",
        package_manager="yum",
        network_backend="network-scripts",
        cloud_image="https://cloud.centos.org/centos/7/images/CentOS-7-x86_64-GenericCloud.qcow2",
        kickstart_version="RHEL7",
        os_variant="centos7.0",
        httpd_package="httpd",
        python="python",
        cockpit_key_file=False,
    ),
    "el9": OsFamily(
        name="el9",
        package_manager="dnf",
        network_backend="NetworkManager",
        cloud_image=(
            "https://cloud.centos.org/centos/9-stream/x86_64/images/CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2"
        ),
        kickstart_version="RHEL9",
        os_variant="centos-stream9",
        httpd_package="httpd",
        python="python3",
        cockpit_key_file=True,
    ),
}


def os_family(name: str) -> OsFamily:
    return OS_FAMILIES[name]
