"""Module prompts, one folder per task: ``<module>.md`` (role instructions) and ``<module>.examples.json``."""

from pathlib import Path

PROMPT_ROOT = Path(__file__).resolve().parent
