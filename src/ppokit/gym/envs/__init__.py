"""Environments: making single and vector envs from ids or callables (the backends table in ``make``: gymnasium,
envpool; Atari preprocessing), the spaces ppokit supports and how observations are packed, invalid-action masks,
the toy envs the tests and presets use, and video."""
