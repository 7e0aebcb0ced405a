"""FramePack's own pipeline, headless, for bench/job.ts: the worker of lllyasviel/FramePack's demo_gradio.py with its
diffusers_helper, driven without Gradio, on random weights of the real shapes. Runs on the NVIDIA machine only; the
FramePack sources are unpacked there from a tarball and never copied into this project.

What it runs, as demo_gradio.py's worker does it: Llama + CLIP text encoding (encode_prompt_conds), the bucket and
resize, the VAE encode of the start image, SigLIP, then for each section of the original (inverted) loop: sampling
with sample_hunyuan (UniPC, distilled CFG 10, TeaCache as asked) and the VAE decode of the section with soft-append.
The MP4 writing of each section (torchvision + PyAV, not on the machine) is left out and reported as such.

Modes, as the reference picks them from the free memory (high_vram = free > 60 GB):
  high: every model on the GPU;
  low:  DynamicSwap for the transformer and Llama, models loaded and offloaded per stage with 6 GB preserved, VAE
        tiling on. An H200 has 141 GB, so the low mode is run as on a card of --vram-gb: a placeholder tensor holds
        the rest of the memory, so torch.cuda.mem_get_info (what the reference reads) sees that card.

Weights: models built from the repository's configs (src/models/configs), parameters uniform with the real-size
hub's rule (std 1/sqrt(fan_in); norm weights 1 +- 0.02; biases +- 0.02), in the dtypes demo_gradio.py loads
(transformer bf16, the rest fp16). Prints one JSON line per mode.

Usage (GPU machine): PYTHONPATH=/tmp/dsite:/tmp/framepack python3 bench/framepack_reference.py --modes high,low
  [--seconds 1] [--steps 25] [--no-teacache] [--vram-gb 16] [--llama-tokenizer FILE]
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

import transformers


def import_with_shims(load):
    """Runs `load` (imports of diffusers 0.33.1 and diffusers_helper, written for transformers 4.46) on the image's
    transformers 5: each name transformers 5 no longer exports is given a placeholder, and the import is retried."""
    import importlib
    import re
    for _ in range(40):
        try:
            return load()
        except ImportError as e:
            m = re.match(r"cannot import name '(\w+)' from '([\w.]+)'", str(e))
            if not m or not m.group(2).startswith("transformers"):
                raise
            setattr(importlib.import_module(m.group(2)), m.group(1), f"<{m.group(1)}: not in transformers {transformers.__version__}>")
            for name in [n for n in sys.modules if n.startswith(("diffusers", "diffusers_helper"))]:
                del sys.modules[name]
    raise ImportError("too many names missing from transformers")


def load_framepack():
    import diffusers
    from diffusers import AutoencoderKLHunyuanVideo
    from diffusers_helper import hunyuan, utils, memory, clip_vision, bucket_tools
    from diffusers_helper.models.hunyuan_video_packed import HunyuanVideoTransformer3DModelPacked
    from diffusers_helper.pipelines.k_diffusion_hunyuan import sample_hunyuan
    return diffusers, AutoencoderKLHunyuanVideo, hunyuan, utils, memory, clip_vision, bucket_tools, HunyuanVideoTransformer3DModelPacked, sample_hunyuan


if not hasattr(transformers, "LlamaTokenizerFast"):
    transformers.LlamaTokenizerFast = transformers.PreTrainedTokenizerFast
(diffusers, AutoencoderKLHunyuanVideo, _hunyuan, _utils, _memory, _clip_vision, _bucket_tools,
 HunyuanVideoTransformer3DModelPacked, sample_hunyuan) = import_with_shims(load_framepack)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, LlamaConfig, LlamaModel, PreTrainedTokenizerFast  # noqa: E402
from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel  # noqa: E402
encode_prompt_conds, vae_decode, vae_encode = _hunyuan.encode_prompt_conds, _hunyuan.vae_decode, _hunyuan.vae_encode
crop_or_pad_yield_mask, soft_append_bcthw, resize_and_center_crop = _utils.crop_or_pad_yield_mask, _utils.soft_append_bcthw, _utils.resize_and_center_crop
gpu, get_cuda_free_memory_gb, DynamicSwapInstaller = _memory.gpu, _memory.get_cuda_free_memory_gb, _memory.DynamicSwapInstaller
fake_diffusers_current_device, load_model_as_complete = _memory.fake_diffusers_current_device, _memory.load_model_as_complete
move_model_to_device_with_memory_preservation = _memory.move_model_to_device_with_memory_preservation
offload_model_from_device_for_memory_preservation = _memory.offload_model_from_device_for_memory_preservation
unload_complete_models = _memory.unload_complete_models
hf_clip_vision_encode, find_nearest_bucket = _clip_vision.hf_clip_vision_encode, _bucket_tools.find_nearest_bucket

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
PROMPT = "The girl dances gracefully, with clear movements, full of charm."


def config(name):
    with open(os.path.join(ROOT, "src/models/configs", f"{name}.json")) as f:
        return {k: v for k, v in json.load(f).items() if not k.startswith("_")}


def randomize(model):
    """The real-size hub's rule (scripts/realSizeHub.ts valueRule), drawn on the model's device."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                a = 0.02 * math.sqrt(3)
                centre = 1.0 if (name.endswith(".weight") and "norm" in name) else 0.0
            else:
                a = math.sqrt(3 / math.prod(p.shape[1:]))
                centre = 0.0
            p.uniform_(centre - a, centre + a)


def start_image(size=1024):
    """The same 1024x1024 stand-in as bench/job.ts (gradients and rings)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r = np.hypot(x - size / 2, y - size / 2)
    img = np.stack([255 * x / size, 255 * y / size, 128 + 127 * np.sin(r / 24)], axis=-1)
    return np.floor(img).astype(np.uint8)


def swap_per_layer(model):
    """DynamicSwap's effect for Llama — each weight copied to the GPU when used, the copy dropped after — done per
    module with hooks. FramePack installs DynamicSwap on Llama itself, but under transformers 5 a DynamicSwap'd
    LlamaModel returns no hidden_states (its output capture does not see the swapped classes), and FramePack reads
    hidden_states[-3]."""
    hooks = []

    def swap_in(mod, _args):
        mod.cpu_params = {n: p.data for n, p in mod.named_parameters(recurse=False)}
        mod.cpu_buffers = dict(mod.named_buffers(recurse=False))
        for p in mod.parameters(recurse=False):
            p.data = p.data.to(gpu, non_blocking=True)
        for n, b in mod.cpu_buffers.items():
            mod._buffers[n] = b.to(gpu, non_blocking=True)

    def swap_out(mod, _args, _out):
        for n, p in mod.named_parameters(recurse=False):
            p.data = mod.cpu_params[n]
        mod._buffers.update(mod.cpu_buffers)
        del mod.cpu_params, mod.cpu_buffers

    for m in model.modules():
        if any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False)):
            hooks += [m.register_forward_pre_hook(swap_in), m.register_forward_hook(swap_out)]
    model.swap_hooks = hooks


def sync():
    torch.cuda.synchronize()


class Stages:
    """Wall time and peak allocated bytes per named stage."""

    def __init__(self):
        self.rows = []
        self.t0 = None

    def start(self):
        sync()
        torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()

    def end(self, name):
        sync()
        self.rows.append({"name": name, "s": time.perf_counter() - self.t0, "peak_bytes": torch.cuda.max_memory_allocated()})
        torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", default="high,low")
    ap.add_argument("--seconds", type=float, default=1)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--no-teacache", action="store_true")
    ap.add_argument("--vram-gb", type=float, default=16)
    ap.add_argument("--preserved-gb", type=float, default=6)
    ap.add_argument("--llama-tokenizer", default=None)
    a = ap.parse_args()

    t_build = time.perf_counter()

    def build(make, dtype):
        torch.set_default_dtype(dtype)
        with torch.device("cuda"):
            m = make()
        torch.set_default_dtype(torch.float32)
        randomize(m)
        return m.eval().requires_grad_(False)

    text_encoder = build(lambda: LlamaModel(LlamaConfig(**config("text_encoder"))), torch.float16)
    text_encoder_2 = build(lambda: CLIPTextModel(CLIPTextConfig(**config("text_encoder_2"))), torch.float16)
    image_encoder = build(lambda: SiglipVisionModel(SiglipVisionConfig(**config("image_encoder"))), torch.float16)
    vae = build(lambda: AutoencoderKLHunyuanVideo(**config("vae")), torch.float16)
    transformer = build(lambda: HunyuanVideoTransformer3DModelPacked(**config("transformer")), torch.bfloat16)
    transformer.high_quality_fp32_output_for_inference = True
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=a.llama_tokenizer or os.path.join(ROOT, "public/models/tiny/HunyuanVideo/tokenizer/tokenizer.json"))
    tokenizer.pad_token = tokenizer.pad_token or "<|end_of_text|>"
    tiny_clip = os.path.join(ROOT, "public/models/tiny/HunyuanVideo/tokenizer_2")
    tokenizer_2 = CLIPTokenizer(os.path.join(tiny_clip, "vocab.json"), os.path.join(tiny_clip, "merges.txt"))
    feature_extractor = SiglipImageProcessor(size={"height": 384, "width": 384}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=3)
    sync()
    build_s = time.perf_counter() - t_build

    # Forward hooks time Llama's own forward inside encode_prompt_conds (the rest of the text stage is CLIP's).
    llama_time = [0.0]

    def pre(_m, _i):
        sync()
        llama_time.append(time.perf_counter())

    def post(_m, _i, _o):
        sync()
        llama_time[0] += time.perf_counter() - llama_time.pop()

    text_encoder.register_forward_pre_hook(pre)
    text_encoder.register_forward_hook(post)

    input_image = start_image()
    for mode in a.modes.split(","):
        high_vram = mode == "high"
        placeholder = None
        hold = 0
        models = [text_encoder, text_encoder_2, image_encoder, vae, transformer]
        if high_vram:
            for m in models:
                m.to(gpu)
            vae.disable_tiling()
        else:
            for m in models:
                m.to("cpu")
            torch.cuda.empty_cache()
            free, _total = torch.cuda.mem_get_info()
            hold = free - int(a.vram_gb * 2**30)
            if hold > 0:
                placeholder = torch.empty(hold, dtype=torch.uint8, device=gpu)
            vae.enable_slicing()
            vae.enable_tiling()
            DynamicSwapInstaller.install_model(transformer, device=gpu)
            swap_per_layer(text_encoder)
        free_gb = get_cuda_free_memory_gb(gpu)
        result = run_worker((text_encoder, text_encoder_2, image_encoder, vae, transformer, tokenizer, tokenizer_2, feature_extractor), input_image, a, high_vram, llama_time)
        for row in result["stages"]:
            row["peak_bytes"] -= max(hold, 0)  # the placeholder is not the pipeline's
        result.update({"mode": mode, "free_gb_seen": free_gb, "build_s": build_s, "torch": torch.__version__, "diffusers": diffusers.__version__,
                       "transformers": transformers.__version__, "gpu": torch.cuda.get_device_name(0)})
        print(json.dumps(result), flush=True)
        if not high_vram:
            DynamicSwapInstaller.uninstall_model(transformer)
            for h in text_encoder.swap_hooks:
                h.remove()
            unload_complete_models()
        del placeholder
        torch.cuda.empty_cache()


@torch.no_grad()
def run_worker(models, input_image, a, high_vram, llama_time):
    """demo_gradio.py's worker, its Gradio calls left out; each stage timed."""
    text_encoder, text_encoder_2, image_encoder, vae, transformer, tokenizer, tokenizer_2, feature_extractor = models
    steps, cfg, gs, rs, seed, latent_window_size = a.steps, 1.0, 10.0, 0.0, 31337, 9
    total_latent_sections = int(max(round((a.seconds * 30) / (latent_window_size * 4)), 1))
    st = Stages()
    t_job = time.perf_counter()
    st.start()
    if not high_vram:
        unload_complete_models(text_encoder, text_encoder_2, image_encoder, vae, transformer)
        fake_diffusers_current_device(text_encoder, gpu)
        load_model_as_complete(text_encoder_2, target_device=gpu)
    llama_time[0] = 0.0
    llama_vec, clip_l_pooler = encode_prompt_conds(PROMPT, text_encoder, text_encoder_2, tokenizer, tokenizer_2)
    llama_vec_n, clip_l_pooler_n = torch.zeros_like(llama_vec), torch.zeros_like(clip_l_pooler)
    llama_vec, llama_attention_mask = crop_or_pad_yield_mask(llama_vec, length=512)
    llama_vec_n, llama_attention_mask_n = crop_or_pad_yield_mask(llama_vec_n, length=512)
    st.end("text")
    text = st.rows.pop()
    st.rows.append({"name": "llama", "s": llama_time[0], "peak_bytes": text["peak_bytes"]})
    st.rows.append({"name": "clip", "s": text["s"] - llama_time[0], "peak_bytes": text["peak_bytes"]})

    H, W, _C = input_image.shape
    height, width = find_nearest_bucket(H, W, resolution=640)
    input_image_np = resize_and_center_crop(input_image, target_width=width, target_height=height)
    input_image_pt = (torch.from_numpy(input_image_np).float() / 127.5 - 1).permute(2, 0, 1)[None, :, None]

    if not high_vram:
        load_model_as_complete(vae, target_device=gpu)
    start_latent = vae_encode(input_image_pt, vae)
    st.end("vae-encode")

    if not high_vram:
        load_model_as_complete(image_encoder, target_device=gpu)
    image_encoder_last_hidden_state = hf_clip_vision_encode(input_image_np, feature_extractor, image_encoder).last_hidden_state
    st.end("siglip")

    llama_vec, llama_vec_n = llama_vec.to(transformer.dtype), llama_vec_n.to(transformer.dtype)
    clip_l_pooler, clip_l_pooler_n = clip_l_pooler.to(transformer.dtype), clip_l_pooler_n.to(transformer.dtype)
    image_encoder_last_hidden_state = image_encoder_last_hidden_state.to(transformer.dtype)

    rnd = torch.Generator("cpu").manual_seed(seed)
    num_frames = latent_window_size * 4 - 3
    history_latents = torch.zeros(size=(1, 16, 1 + 2 + 16, height // 8, width // 8), dtype=torch.float32).cpu()
    history_pixels = None
    total_generated_latent_frames = 0
    latent_paddings = list(reversed(range(total_latent_sections)))
    if total_latent_sections > 4:
        latent_paddings = [3] + [2] * (total_latent_sections - 3) + [1, 0]
    step_times = []
    first_preview = None
    for k, latent_padding in enumerate(latent_paddings):
        is_last_section = latent_padding == 0
        latent_padding_size = latent_padding * latent_window_size
        indices = torch.arange(0, sum([1, latent_padding_size, latent_window_size, 1, 2, 16])).unsqueeze(0)
        clean_latent_indices_pre, _blank, latent_indices, clean_latent_indices_post, clean_latent_2x_indices, clean_latent_4x_indices = \
            indices.split([1, latent_padding_size, latent_window_size, 1, 2, 16], dim=1)
        clean_latent_indices = torch.cat([clean_latent_indices_pre, clean_latent_indices_post], dim=1)
        clean_latents_pre = start_latent.to(history_latents)
        clean_latents_post, clean_latents_2x, clean_latents_4x = history_latents[:, :, :1 + 2 + 16, :, :].split([1, 2, 16], dim=2)
        clean_latents = torch.cat([clean_latents_pre, clean_latents_post], dim=2)
        if not high_vram:
            unload_complete_models()
            move_model_to_device_with_memory_preservation(transformer, target_device=gpu, preserved_memory_gb=a.preserved_gb)
        transformer.initialize_teacache(enable_teacache=not a.no_teacache, num_steps=steps)
        times = []
        last = [time.perf_counter()]

        def callback(d):
            nonlocal first_preview
            sync()
            now = time.perf_counter()
            times.append(now - last[0])
            last[0] = now
            if first_preview is None:
                first_preview = now - t_job

        generated_latents = sample_hunyuan(
            transformer=transformer, sampler="unipc", width=width, height=height, frames=num_frames,
            real_guidance_scale=cfg, distilled_guidance_scale=gs, guidance_rescale=rs, num_inference_steps=steps, generator=rnd,
            prompt_embeds=llama_vec, prompt_embeds_mask=llama_attention_mask, prompt_poolers=clip_l_pooler,
            negative_prompt_embeds=llama_vec_n, negative_prompt_embeds_mask=llama_attention_mask_n, negative_prompt_poolers=clip_l_pooler_n,
            device=gpu, dtype=torch.bfloat16, image_embeddings=image_encoder_last_hidden_state,
            latent_indices=latent_indices, clean_latents=clean_latents, clean_latent_indices=clean_latent_indices,
            clean_latents_2x=clean_latents_2x, clean_latent_2x_indices=clean_latent_2x_indices,
            clean_latents_4x=clean_latents_4x, clean_latent_4x_indices=clean_latent_4x_indices, callback=callback,
        )
        if is_last_section:
            generated_latents = torch.cat([start_latent.to(generated_latents), generated_latents], dim=2)
        total_generated_latent_frames += int(generated_latents.shape[2])
        history_latents = torch.cat([generated_latents.to(history_latents), history_latents], dim=2)
        st.end(f"section {k + 1} steps")
        step_times.append(times)
        if not high_vram:
            offload_model_from_device_for_memory_preservation(transformer, target_device=gpu, preserved_memory_gb=8)
            load_model_as_complete(vae, target_device=gpu)
        real_history_latents = history_latents[:, :, :total_generated_latent_frames, :, :]
        if history_pixels is None:
            history_pixels = vae_decode(real_history_latents, vae).cpu()
        else:
            section_latent_frames = (latent_window_size * 2 + 1) if is_last_section else (latent_window_size * 2)
            overlapped_frames = latent_window_size * 4 - 3
            current_pixels = vae_decode(real_history_latents[:, :, :section_latent_frames], vae).cpu()
            history_pixels = soft_append_bcthw(current_pixels, history_pixels, overlapped_frames)
        if not high_vram:
            unload_complete_models()
        st.end(f"section {k + 1} decode")
    total = time.perf_counter() - t_job
    return {
        "stages": st.rows, "total_s": total, "first_preview_s": first_preview, "steps": step_times,
        "frames": int(history_pixels.shape[2]), "bucket": f"{width}x{height}", "sections": total_latent_sections,
        "teacache": not a.no_teacache, "vram_gb": None if high_vram else a.vram_gb,
    }


if __name__ == "__main__":
    sys.exit(main())
