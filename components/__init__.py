"""virtfleet: a virtualization estate as code.

``model`` (pure, validated configuration) -> ``render`` (pure, Jinja2 templates) -> Pulumi
components (``hosts``, ``guests``, ``haproxy_tier``) -> resources and stack outputs.
"""
