"""fer-video: facial emotion recognition for videos, one emotion timeline per face."""
__version__ = "0.1.0"

from .api import analyze  # noqa: E402  (light: heavy libraries load on first call)

__all__ = ["analyze", "__version__"]
