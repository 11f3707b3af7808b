"""The one table of media file extensions: what a folder batch lists as an input and how
the decoder reads it.

An input named with an extension of ``IMAGE_EXTENSIONS`` is a still image, read by Pillow
(one frame at time 0, ``is_image`` true); one of ``VIDEO_EXTENSIONS`` is a video, read by
FFmpeg through PyAV. ``MEDIA_EXTENSIONS`` (both) is what folder discovery lists
(``fer_video.batch.discover``); a file given by name is analysed whatever its extension.
Extensions are lower case with the dot; compare ``Path(name).suffix.lower()``.

Imports nothing: discovery, the decoder and the training-data loader all use it.
"""
from __future__ import annotations

# Containers FFmpeg demuxes (with the video codecs its usual builds decode: H.264, HEVC,
# VP8/9, AV1, MPEG-1/2/4, ProRes, DV, ...). The extension only picks the input: FFmpeg
# probes the content, so a container under another container's extension still opens.
VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".flv", ".wmv", ".mpg", ".mpeg", ".ts",
    ".mts", ".m2ts", ".3gp", ".3g2", ".ogv", ".mxf", ".vob", ".asf", ".f4v", ".dv", ".y4m",
    # GIF is a video: FFmpeg's gif demuxer decodes every frame of an animated one (Pillow
    # would give only the first). A GIF of one frame is a still image (decode.probe counts
    # its packets: one frame -> is_image).
    ".gif",
})

# Stills, each a format Pillow decodes (its JPEG, PNG, BMP, WebP, TIFF and PPM plugins;
# WebP needs Pillow built with libwebp, as the PyPI wheels are):
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe",    # JPEG (.jpe: the third extension registered for image/jpeg)
    ".png",                     # PNG (an APNG reads as its first frame)
    ".bmp",                     # Windows bitmap
    ".webp",                    # WebP (an animated one reads as its first frame)
    ".tif", ".tiff",            # TIFF (the first page)
    ".pgm", ".ppm",             # Netpbm grey / colour: some face datasets ship faces as PGM
})

MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | IMAGE_EXTENSIONS

__all__ = ["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS"]
