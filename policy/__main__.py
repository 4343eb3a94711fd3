"""The virtfleet CrossGuard policy pack: `pulumi preview --policy-pack policy --policy-pack-config
policy/config/<stack>.json`. The policies live in virtfleet_policies/ (make plan runs them offline)."""

from pulumi_policy import PolicyPack
from virtfleet_policies import PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES)
