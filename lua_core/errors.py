"""Every exception the package raises on purpose; each message names the problem and the fix."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


class UpscaleCancelled(RuntimeError):
    """The caller's cancellation hook asked the upscale to stop."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message names the file and the problem."""


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched; the message names the URL, the reason and the manual fix."""

    def __init__(self, url: Optional[str], dest_path: Union[str, os.PathLike], reason: str, *,
                 hint: Optional[str] = None) -> None:
        self.url = url
        self.dest_path = Path(dest_path)
        self.reason = reason
        if hint is None:
            hint = (f"Download {url} yourself and place it at {self.dest_path}" if url
                    else f"Place the file at {self.dest_path} yourself")
        head = f"Could not download {url} to {self.dest_path}" if url else f"Could not obtain {self.dest_path}"
        super().__init__(f"{head}: {reason}. {hint}.")


class MetricUnavailable(RuntimeError):
    """A perceptual metric cannot run here (weights not fetched); the message says what to run."""


class FetchError(RuntimeError):
    """The perceptual metrics' weights could not be fetched or did not match their pinned hashes."""


class ComfyUINotFound(ImportError):
    """ComfyUI's ``comfy`` package is not importable from this environment."""
