"""Exceptions ppokit raises for bad input: each message names what was wrong and what was expected."""


class PPOKitError(Exception):
    """Base class of every error ppokit raises on purpose."""


class ConfigError(PPOKitError, ValueError):
    """A config key or value is wrong."""


class EnvError(PPOKitError, RuntimeError):
    """An environment could not be made, or misbehaved while running."""


class UnsupportedSpaceError(PPOKitError, TypeError):
    """An observation or action space ppokit cannot handle (yet)."""


class CheckpointError(PPOKitError, ValueError):
    """A saved model or checkpoint is missing, corrupt, foreign or incompatible."""


class NonFiniteError(PPOKitError):
    """Too many gradient steps in a row had a non-finite loss or gradient."""


class RewardError(PPOKitError, RuntimeError):
    """A reward function raised, or returned something that is not a finite number."""


class InputError(PPOKitError, ValueError):
    """An argument of a ppokit call (an observation, a mask, a state) has the wrong shape or value."""
