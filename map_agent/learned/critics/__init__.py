"""Learned critics shipped with the package: ``<name>.npz`` weights and a ``<name>.json`` card each (see
``map_agent.learned.critic``; a task's critic is named after the task)."""
