"""twin: digital-twin simulation engine for cardiac electrophysiology and neuro models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("twin")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
