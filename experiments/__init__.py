"""The MAP paper's tables and figures as data: one YAML file each, run by ``map-agent reproduce <name>``."""
