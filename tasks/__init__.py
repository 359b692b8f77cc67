"""Tasks from the papers, one package per task: environment (ground truth), problem loader, data with licence.

Installed as ``map_agent.tasks``; the registry of names is ``map_agent.task.TASKS``.
"""
