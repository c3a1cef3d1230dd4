"""Exceptions raised by jitconv. Every message names what the user gave: the op, the
input, the shape, the field or the file."""


class JitconvError(Exception):
    """Base class of every error jitconv raises on purpose."""


class ConfigError(JitconvError, ValueError):
    """A Config field has a value outside its allowed set."""


class GraphError(JitconvError, ValueError):
    """The graph is malformed: unknown tensor, bad attribute, shape mismatch."""


class InputError(JitconvError, ValueError):
    """Inputs given to Session.run / Session.resize do not match the graph."""


class RegistryError(JitconvError, KeyError):
    """Backend or kernel registry misuse: duplicate key, unknown name."""

    def __str__(self):  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class InternalError(JitconvError, RuntimeError):
    """An invariant of jitconv itself broke; the message names the op involved."""


class OutOfMemoryError(JitconvError, MemoryError):
    """A shape, model file or initializer asks for more memory than the machine can give;
    raised before allocating, naming what asked and the bytes it needed."""
