"""Exceptions raised by the inference engine."""


class UpscaleCancelled(RuntimeError):
    """The caller's cancellation hook asked the upscale to stop."""
