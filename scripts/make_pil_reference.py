#!/usr/bin/python3
"""Writes test/fixtures/pil/: Pillow's own output for the image preprocessing FramePack does with PIL.

src/pipeline/resize.ts claims to reproduce Pillow bit for bit; these files are the independent evidence. The
script synthesizes small RGB images (gradients, hard edges, a disc, seeded noise; odd sizes), runs

  * FramePack's resize_and_center_crop (diffusers_helper/utils.py at 97fe5dbe, copied below unchanged apart
    from taking a PIL image's array),
  * plain Image.resize with LANCZOS and BICUBIC (upscales, downscales, one-axis changes),
  * SigLIP's preprocessing as transformers' SiglipImageProcessor does it (BICUBIC squash to S x S, rescale in
    float64 then float32, normalise in float32),
  * the VAE input normalisation of demo_gradio.py (float32 x / 127.5 - 1, laid out [1, 3, 1, H, W]),

and writes inputs and outputs as gzip'd raw little-endian arrays (uint8 HWC images, float32 tensors) beside a
manifest.json that records the Pillow version. Run with Debian's Python: /usr/bin/python3
scripts/make_pil_reference.py. Output is deterministic (gzip mtime 0), so rerunning changes nothing.
FramePack pins pillow==11.1.0; the files were written with Debian's 9.4.0, and Pillow 11.3.0 (pip, numpy 2.4)
writes byte-identical data: the 8-bit resampling path did not change between them.
"""

import gzip
import json
import platform
import sys
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "test" / "fixtures" / "pil"


def resize_and_center_crop(image, target_width, target_height):
    # diffusers_helper/utils.py, lllyasviel/FramePack 97fe5dbe.
    pil_image = Image.fromarray(image)
    original_width, original_height = pil_image.size
    scale_factor = max(target_width / original_width, target_height / original_height)
    resized_width = int(round(original_width * scale_factor))
    resized_height = int(round(original_height * scale_factor))
    resized_image = pil_image.resize((resized_width, resized_height), Image.LANCZOS)
    left = (resized_width - target_width) / 2
    top = (resized_height - target_height) / 2
    right = (resized_width + target_width) / 2
    bottom = (resized_height + target_height) / 2
    cropped_image = resized_image.crop((left, top, right, bottom))
    return np.array(cropped_image)


def siglip_pixel_values(image, size):
    # transformers 4.46 SiglipImageProcessor: resize (PIL, resample=3 BICUBIC) -> rescale -> normalize.
    resized = np.array(Image.fromarray(image).resize((size, size), Image.BICUBIC))
    rescaled = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)  # image_transforms.rescale
    mean = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    std = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    normalized = (rescaled - mean) / std  # image_transforms.normalize, float32
    return resized, normalized.transpose(2, 0, 1)[None].astype(np.float32)  # [1, 3, S, S]


def vae_input(image):
    # demo_gradio.py: torch.from_numpy(img).float() / 127.5 - 1, permute(2, 0, 1)[None, :, None] (CPU float32).
    x = image.astype(np.float32) / np.float32(127.5) - np.float32(1)
    return x.transpose(2, 0, 1)[None, :, None].astype(np.float32)  # [1, 3, 1, H, W]


def synth(width, height, seed, texture):
    """Gradients per channel, hard stripes, a hard-edged disc, a full-range noise patch and (texture) mild noise.

    Without texture the gradients come in steps of 8 levels, so that the large image stays small once gzip'd."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.stack([
        255 * x / max(width - 1, 1),
        255 * y / max(height - 1, 1),
        255 * (x + y) / max(width + height - 2, 1),
    ], axis=-1)
    if not texture:
        img = np.floor(img / 8) * 8
    stripes = (x.astype(int) // 3) % 2 == 0
    band = (y > height * 0.15) & (y < height * 0.3)
    img[band & stripes] = [255, 255, 255]
    img[band & ~stripes] = [0, 0, 0]
    disc = (x - width * 0.7) ** 2 + (y - height * 0.6) ** 2 < (min(width, height) * 0.2) ** 2
    img[disc] = [250, 20, 120]
    ph, pw = max(height // 5, 2), max(width // 5, 2)
    if not texture:
        ph, pw = max(height // 8, 2), max(width // 8, 2)
    py, px = int(height * 0.55), int(width * 0.1)
    img[py:py + ph, px:px + pw] = rng.integers(0, 256, size=(len(range(height)[py:py + ph]), len(range(width)[px:px + pw]), 3))
    if texture:
        img += rng.integers(-6, 7, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_gz(name, array):
    data = np.ascontiguousarray(array)
    assert data.dtype in (np.uint8, np.dtype("<f4"))
    (OUT / name).write_bytes(gzip.compress(data.tobytes(), compresslevel=9, mtime=0))
    return name


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.gz"):
        old.unlink()

    images = {
        "landscape_97x61": synth(97, 61, 1, True),
        "portrait_50x83": synth(50, 83, 2, True),
        "large_300x200": synth(300, 200, 3, False),
        "exact_48x40": synth(48, 40, 4, True),
        "narrow_20x47": synth(20, 47, 5, True),
        "same_width_64x50": synth(64, 50, 6, True),
        "odd_72x50": synth(72, 50, 7, True),
        "half_40x26": synth(40, 26, 9, True),
        # All noise: every pixel an edge, so filter overshoot hits clip8 at both ends.
        "noise_8x6": np.random.default_rng(8).integers(0, 256, size=(6, 8, 3)).astype(np.uint8),
    }
    manifest = {
        "what": "Pillow reference outputs for src/pipeline/resize.ts; written by scripts/make_pil_reference.py",
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "format": "each file is gzip of raw little-endian data: images uint8 [height, width, 3]; tensors float32 in `shape`",
        "images": {},
        "center_crop": [],
        "resize": [],
        "siglip": [],
        "vae_input": [],
    }
    for name, img in images.items():
        h, w, _ = img.shape
        manifest["images"][name] = {"width": w, "height": h, "file": write_gz(f"{name}.rgb.gz", img)}

    def image_entry(name, array):
        h, w, _ = array.shape
        return {"width": w, "height": h, "file": write_gz(f"{name}.rgb.gz", array)}

    # (input, target width, target height, why)
    crops = [
        ("landscape_97x61", 48, 40, "downscale, crop left/right"),
        ("portrait_50x83", 56, 64, "upscale, crop top/bottom from a half (14.5 -> 14)"),
        ("portrait_50x83", 64, 56, "portrait input into a landscape bucket"),
        ("large_300x200", 56, 48, "4x downscale: antialiasing support of 12 px"),
        ("exact_48x40", 48, 40, "already the bucket size: unchanged"),
        ("narrow_20x47", 20, 48, "width stays 20: horizontal pass skipped"),
        ("same_width_64x50", 64, 40, "resize to its own size (copy), then crop"),
        ("odd_72x50", 45, 39, "odd target: PIL's rounded crop box is one pixel narrower"),
        ("half_40x26", 50, 24, "resized height 26 * 1.25 = 32.5 rounds to the even 32"),
    ]
    for i, (src, tw, th, why) in enumerate(crops):
        out = resize_and_center_crop(images[src], tw, th)
        manifest["center_crop"].append({
            "input": src, "target_width": tw, "target_height": th, "why": why,
            "output": image_entry(f"crop{i}_{src}_to_{tw}x{th}", out),
        })

    # (input, width, height, filter, why)
    resizes = [
        ("landscape_97x61", 97, 30, "lanczos", "height only"),
        ("landscape_97x61", 41, 61, "lanczos", "width only"),
        ("portrait_50x83", 131, 29, "bicubic", "up in x, down in y"),
        ("large_300x200", 37, 23, "bicubic", "8x downscale"),
        ("noise_8x6", 61, 45, "lanczos", "7.5x upscale of noise: overshoot clipped"),
        ("noise_8x6", 61, 45, "bicubic", "7.5x upscale of noise: overshoot clipped"),
    ]
    filters = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC}
    for i, (src, w, h, flt, why) in enumerate(resizes):
        out = np.array(Image.fromarray(images[src]).resize((w, h), filters[flt]))
        manifest["resize"].append({
            "input": src, "width": w, "height": h, "filter": flt, "why": why,
            "output": image_entry(f"resize{i}_{src}_{flt}_{w}x{h}", out),
        })

    # SigLIP from a bucket-sized image (the real flow) and from raw inputs; the input is named by file.
    crop0 = manifest["center_crop"][0]["output"]
    siglips = [
        (crop0, "crop0", 56, "bucket image up to 56"),
        (manifest["images"]["landscape_97x61"], "landscape_97x61", 56, "down in x, up in y"),
        (manifest["images"]["large_300x200"], "large_300x200", 24, "downscale"),
    ]
    for i, (src_entry, src_name, size, why) in enumerate(siglips):
        src = np.frombuffer(gzip.decompress((OUT / src_entry["file"]).read_bytes()), np.uint8)
        src = src.reshape(src_entry["height"], src_entry["width"], 3)
        resized, pixels = siglip_pixel_values(src, size)
        manifest["siglip"].append({
            "input": src_entry, "size": size, "why": why,
            "resized": image_entry(f"siglip{i}_{src_name}_{size}", resized),
            "pixel_values": {"shape": list(pixels.shape), "file": write_gz(f"siglip{i}_{src_name}_{size}.f32.gz", pixels)},
        })

    crop1 = manifest["center_crop"][1]["output"]
    src = np.frombuffer(gzip.decompress((OUT / crop1["file"]).read_bytes()), np.uint8).reshape(crop1["height"], crop1["width"], 3)
    pixels = vae_input(src)
    manifest["vae_input"].append({
        "input": crop1,
        "pixels": {"shape": list(pixels.shape), "file": write_gz("vae_input_crop1.f32.gz", pixels)},
    })

    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes, Pillow {PIL.__version__}")


if __name__ == "__main__":
    main()
