"""The HAProxy tier: ``tier`` (the component), ``balancer_files`` (haproxy.cfg, the rsyslog snippet and
the URLs, pure), ``web_servers`` (the step that makes a guest a web server, per guest type, pure)."""
