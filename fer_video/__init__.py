"""fer-video: facial emotion recognition for videos, one emotion timeline per face."""
__version__ = "0.1.0"
