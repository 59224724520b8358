"""PyTorch reference of genfleet's video DiT, for `cargo bench --bench dit_step`.

The same architecture as worker/src/model/dit.rs (after Wan2.1's WanModel),
written the way PyTorch model code is written, run with the same weights (the
model directory `genfleet model init` makes) on the same inputs (the
conditioning, latent and timestep the bench saved from candle, in f32). It
checks that one step lands where candle's did, then times denoising steps: the
DiT on both guidance branches in one batch of 2, the guidance mix and the Euler
update, exactly what a candle step does.

--device cpu|cuda says where, --dtype f32|bf16 in what the DiT computes (the
precision candle computed in): weights, activations and, as candle casts them,
the timestep features and the RoPE tables. The latent stays f32, as in candle's
pipeline (and diffusers' flow-matching schedulers): the DiT's velocity is mixed
and added to it in f32, and the result compared with candle's in f32. On a GPU
the clock is read after torch.cuda.synchronize(): kernels run asynchronously.

Prints one JSON object on its last line: p50 seconds per step and the largest
difference from candle's step relative to the largest value of candle's.
"""

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class Dit:
    """Functional DiT over a dict of weights named as in model.safetensors."""

    def __init__(self, weights, config):
        self.w = weights
        self.c = config
        self.head_dim = config["dim"] // config["heads"]

    def linear(self, x, name):
        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def norm(self, x):
        # LayerNorm without affine (the modulated norms).
        return F.layer_norm(x, (x.shape[-1],), eps=self.c["eps"])

    def attention(self, x, context, name, bias=None, rope=None):
        b, n, _ = x.shape
        heads, d = self.c["heads"], self.head_dim

        def split(t):
            return t.reshape(b, t.shape[1], heads, d).transpose(1, 2)

        # Per-head QK RMSNorm (HunyuanVideo, CogVideoX).
        q = F.rms_norm(split(self.linear(x, name + ".q")), (d,), self.w[name + ".norm_q.weight"], self.c["eps"])
        k = F.rms_norm(split(self.linear(context, name + ".k")), (d,), self.w[name + ".norm_k.weight"], self.c["eps"])
        v = split(self.linear(context, name + ".v"))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.linear(out.transpose(1, 2).reshape(b, n, heads * d), name + ".o")

    def block(self, i, x, e0, text, bias, rope):
        p = f"blocks.{i}"
        e = (e0 + self.w[p + ".modulation"]).chunk(6, dim=1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = e
        h = modulate(self.norm(x), shift_msa, scale_msa)
        y = self.attention(h, h, p + ".self_attn", rope=rope)
        x = x + y * gate_msa
        normed = F.layer_norm(x, (x.shape[-1],), self.w[p + ".norm3.weight"], self.w[p + ".norm3.bias"], self.c["eps"])
        x = x + self.attention(normed, text, p + ".cross_attn", bias=bias)
        h = modulate(self.norm(x), shift_mlp, scale_mlp)
        y = self.linear(F.gelu(self.linear(h, p + ".ffn.0"), approximate="tanh"), p + ".ffn.2")
        return x + y * gate_mlp

    def forward(self, x, t, text, bias):
        b, c, frames, height, width = x.shape
        _, ph, pw = self.c["patch"]
        hp, wp = height // ph, width // pw
        tokens = x.reshape(b, c, frames, hp, ph, wp, pw).permute(0, 2, 3, 5, 1, 4, 6)
        h = self.linear(tokens.reshape(b, frames * hp * wp, c * ph * pw), "patch_embedding")
        if self.c.get("absolute_positions", False):
            cos, sin = rope_tables(self.c["dim"], (frames, hp, wp), self.c["rope_theta"])
            h = h + torch.cat([sin, cos], dim=1).to(device=x.device, dtype=x.dtype)

        # The timestep features and RoPE tables are made in f32 (f64) and
        # cast to the DiT's dtype, as candle does.
        features = sinusoidal(t, self.c["freq_dim"]).to(x.dtype)
        e = self.linear(F.silu(self.linear(features, "time_embedding.0")), "time_embedding.2")
        e0 = self.linear(F.silu(e), "time_projection.1").reshape(b, 6, self.c["dim"])
        rope = rope_tables(self.head_dim, (frames, hp, wp), self.c["rope_theta"])
        rope = [r.to(device=x.device, dtype=x.dtype) for r in rope]
        for i in range(self.c["depth"]):
            h = self.block(i, h, e0, text, bias, rope)
        m = (self.w["head.modulation"] + e.unsqueeze(1)).chunk(2, dim=1)
        out = self.linear(modulate(self.norm(h), m[0], m[1]), "head.head")
        out = out.reshape(b, frames, hp, wp, c, ph, pw).permute(0, 4, 1, 2, 5, 3, 6)
        return out.reshape(b, c, frames, hp * ph, wp * pw)


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


def sinusoidal(t, dim):
    half = dim // 2
    freqs = torch.tensor([math.exp(-math.log(10_000.0) * i / half) for i in range(half)],
                         dtype=torch.float32, device=t.device)
    args = t[:, None] * freqs[None, :]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def rope_tables(head_dim, grid, theta):
    """cos and sin (N, head_dim/2) of Wan's 3D RoPE: time takes what height
    and width (head_dim/6 pairs each) leave."""
    t, h, w = grid
    pairs_hw = head_dim // 6
    pairs_t = head_dim // 2 - 2 * pairs_hw

    def freqs(pairs):
        return 1.0 / theta ** (2.0 * torch.arange(pairs, dtype=torch.float64) / (2 * pairs))

    ft, fh, fw = freqs(pairs_t), freqs(pairs_hw), freqs(pairs_hw)
    f, y, x = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    angles = torch.cat([
        f.reshape(-1, 1).double() * ft,
        y.reshape(-1, 1).double() * fh,
        x.reshape(-1, 1).double() * fw,
    ], dim=1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x, cos, sin):
    # Interleaved pairs (x0, x1), as candle's rope_i and Wan's complex view.
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


def step(dit, inputs, latent, dtype):
    """One Euler step from `latent` (f32): the DiT in `dtype`, the rest in f32."""
    text = inputs["text"]
    batch = text.shape[0]
    t = torch.full((batch,), inputs["timestep"], dtype=torch.float32, device=latent.device)
    v = dit.forward(latent.to(dtype).repeat(batch, 1, 1, 1, 1), t, text, inputs["bias"]).float()
    if batch == 2:
        cond, uncond = v[0:1], v[1:2]
        v = uncond + (cond - uncond) * inputs["guidance"]
    return latent + v * inputs["delta"]


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model directory (config.json, model.safetensors)")
    parser.add_argument("--inputs", required=True, help="safetensors of the step's inputs and candle's result")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="f32", help="what the DiT computes in")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device cuda: torch {torch.__version__} sees no CUDA device")
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    # f32 matrix products in f32, as candle's (no TF32).
    torch.set_float32_matmul_precision("highest")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with open(f"{args.model}/config.json") as f:
        config = json.load(f)["config"]
    weights = load_file(f"{args.model}/model.safetensors")
    dit = Dit({k: v.to(device=device, dtype=dtype) for k, v in weights.items()}, config)
    del weights
    saved = load_file(args.inputs)
    inputs = {
        "text": saved["text"].to(device=device, dtype=dtype),
        "bias": saved["bias"].to(device=device, dtype=dtype),
        **{k: float(saved[k].item()) for k in ("timestep", "delta", "guidance")},
    }
    expected = saved["expected"].to(device=device, dtype=torch.float32)
    start_latent = saved["latent"].to(device=device, dtype=torch.float32)

    times = []
    with torch.inference_mode():
        first = step(dit, inputs, start_latent, dtype)
        rel_diff = ((first - expected).abs().max() / expected.abs().max()).item()
        latent = start_latent
        for _ in range(args.warmup + args.steps):
            sync()
            start = time.perf_counter()
            latent = step(dit, inputs, latent, dtype)
            sync()
            times.append(time.perf_counter() - start)
    timed = sorted(times[args.warmup:])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} CPU threads"
    if args.dtype != "f32":
        where += f" in {args.dtype}"
    print(f"pytorch {torch.__version__} on {where}: "
          f"mean {statistics.mean(timed):.3f} s, p50 {statistics.median(timed):.3f} s, "
          f"min {timed[0]:.3f} s, max {timed[-1]:.3f} s; first step vs candle: {rel_diff:.2e} relative")
    print(json.dumps({"p50": statistics.median(timed), "rel_diff": rel_diff, "torch": torch.__version__,
                      "device": args.device, "dtype": args.dtype}))


if __name__ == "__main__":
    main()
