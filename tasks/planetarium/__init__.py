"""Planetarium (text-to-PDDL): the Blocks World and Gripper domains and the 14-task dataset generator."""

from map_agent.tasks.planetarium.generator import BLOCKSWORLD_TASKS, GRIPPER_TASKS, Instance, domain_text, generate

__all__ = ["BLOCKSWORLD_TASKS", "GRIPPER_TASKS", "Instance", "domain_text", "generate"]
