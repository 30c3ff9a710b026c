"""Building blocks of the podtally Pulumi program; ``infra/__main__.py`` wires them together."""
