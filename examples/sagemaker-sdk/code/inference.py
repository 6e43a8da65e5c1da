"""The user's inference script for the SageMaker PyTorch serving container: model_fn and input_fn; the toolkit's
own predict_fn (the model on the input, no gradients) and output_fn (JSON) do the rest.

Input: a JPEG (``image/jpeg``) or ``{"url": "http://..."}`` (``application/json``) naming one."""

import io
import json
import os
import urllib.request

import torch
from PIL import Image
from shapes_model import TinyNet, to_tensor


def model_fn(model_dir):
    checkpoint = torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu")
    model = TinyNet(len(checkpoint["classes"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def input_fn(body, content_type):
    if content_type == "application/json":
        url = json.loads(body)["url"]
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = answer.read()
    elif content_type != "image/jpeg":
        raise ValueError(f"unsupported content type {content_type}: send image/jpeg or application/json")
    return to_tensor(Image.open(io.BytesIO(body))).unsqueeze(0)
