"""Decoding request bytes into an image, with bounds for hostile input.

The pixel count is read from the header and checked *before* decoding, so a
decompression bomb is refused without allocating it; truncated or
undecodable data is a 400, never a 500. Decoding itself is the training
code's ``load_rgb`` (EXIF rotation, any mode to RGB, JPEG draft mode), so
the model sees images exactly as it did in training.
"""

import io
import warnings

from PIL import Image, UnidentifiedImageError

from training.dataset import load_rgb

from .errors import BadRequest


def decode_image(data: bytes, max_pixels: int, target_size: int) -> Image.Image:
    """Bytes -> an upright RGB image, or BadRequest saying why not."""
    if not data:
        raise BadRequest("the request body is empty; send image bytes or JSON {\"url\": ...}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                width, height = probe.size
            if width * height > max_pixels:
                raise BadRequest(f"the image is {width}x{height} pixels; the limit is {max_pixels} pixels")
            image = load_rgb(io.BytesIO(data), target_size)
            image.load()
            return image
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest("the image is too large to decode safely") from None
    except UnidentifiedImageError:
        raise BadRequest("the body is not a decodable image (unknown or corrupt format)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        # PIL reports truncation and corrupt data as these; their text names no internals.
        raise BadRequest(f"the body is not a decodable image ({exc})") from None
