"""Image -> normalised tensor, the one transform training and serving share."""

from torchvision import transforms

from .model import SPECS


def image_transform(backbone: str, image_size: int) -> transforms.Compose:
    """Resize the short side to 8/7 of ``image_size``, centre-crop, normalise for ``backbone``.

    (256 -> 224 at the standard size, as in torchvision's ImageNet recipe.)
    """
    spec = SPECS[backbone]
    return transforms.Compose([
        transforms.Resize(round(image_size * 8 / 7)),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(spec.mean, spec.std),
    ])
