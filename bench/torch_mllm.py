"""bench/torch_mllm.py: the PyTorch baseline of the mini-MLLM training-step benchmark (bench/run.sh drives it).

    python bench/torch_mllm.py --step sft|dpo [--threads 2] [--warmup 2] [--steps 5] [--seed 1]
                               [--optimizer foreach|fused|loop] [--attention sdpa|sdpa_gqa|math] [--device cpu|cuda]

The same architecture as pivot's mini MLLM (bench/mini_mllm.lua), in plain PyTorch:
 * vision: SigLIP-style ViT: Conv2d patch embedding (stride = kernel = patch) + learned position embeddings,
   pre-LN blocks (LayerNorm eps 1e-6, attention with q/k/v/out biases, MLP fc1 -> GELU(tanh) -> fc2). The features
   are hidden_states[-2] (the output of the second-to-last of the 4 layers; HF's vision_feature_layer = -2), so
   only the first 3 layers are built and run (pivot likewise creates and runs only those), no post-LayerNorm.
 * projector: Linear(128, 256) -> GELU(erf) -> Linear(256, 256).
 * decoder: Qwen2-style: RMSNorm (eps 1e-6), GQA attention with q/k/v biases (no o bias), RoPE (HF rotate-half,
   theta 1e6), causal, SwiGLU MLP, tied input/output embeddings, final RMSNorm.
 * sequence: [64 image embeddings][32 text embeddings]; labels -100 except the last 16 text tokens (HF shift).
Init as pivot's: normal(0, 1/sqrt(fan_in)) for tower linears, patch embedding and positions; torch's default
uniform for the projector; normal(0, 0.02) for decoder weights and embeddings; zero biases; unit norm weights.

Step: forward, loss (SFT: token-mean cross entropy; DPO: sigmoid loss with beta 0.1 on summed response log-probs,
the reference model under torch.no_grad()), backward, clip_grad_norm_(1.0), AdamW(lr 1e-4, wd 0.01), zero_grad.
Prints one line `RESULT {json}` with the timed step times (seconds) and the losses (--profile: then the
torch.profiler table of 3 more steps between `PROFILE BEGIN` / `PROFILE END`). Threads: torch.set_num_threads
(--threads); the BLAS/OpenMP threads are set by the caller through OMP_NUM_THREADS / MKL_NUM_THREADS at start.
"""
import argparse
import json
import math
import os
import sys
import time


def parse():
    ap = argparse.ArgumentParser()
    ap.add_argument("--step", choices=["sft", "dpo"], default="sft")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--optimizer", choices=["foreach", "fused", "loop"], default="foreach")
    ap.add_argument("--attention", choices=["sdpa", "sdpa_gqa", "math"], default="sdpa")
    ap.add_argument("--device", default="cpu", help="torch device (cpu, cuda): the GPU baseline of the Vulkan rows")
    ap.add_argument("--profile", action="store_true", help="then 3 steps under torch.profiler (top ops by self time)")
    return ap.parse_args()


ARGS = parse()
t_start = time.perf_counter()
import torch  # noqa: E402  (after argument parsing so --help is quick)
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

t_import = time.perf_counter()
torch.set_num_threads(ARGS.threads)
if ARGS.device != "cpu":  # models and the tensors made inside forward live there; the batch is made on the CPU
    torch.set_default_device(ARGS.device)

SHAPE = dict(batch=8, image=32, patch=4, text=32, loss_tokens=16, vocab=512, lr=1e-4, betas=(0.9, 0.999),
             eps=1e-8, weight_decay=0.01, max_grad_norm=1.0, beta=0.1)
VISION = dict(hidden=128, intermediate=512, layers=4, heads=4, channels=3, eps=1e-6, feature_layer=-2)
LLM = dict(vocab=SHAPE["vocab"], hidden=256, intermediate=704, layers=4, heads=8, kv_heads=2, head_dim=32,
           eps=1e-6, theta=1e6, std=0.02)
PROJ = (128, 256, 256)


def attend(q, k, v, causal):
    """q [B, H, T, D], k/v [B, Hkv, S, D] -> [B, H, T, D]"""
    H, Hkv = q.shape[1], k.shape[1]
    if ARGS.attention == "sdpa_gqa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=H != Hkv)
    if H != Hkv:  # HF's repeat_kv
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
    if ARGS.attention == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        T = s.shape[-1]
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return s.softmax(-1) @ v


# ------------------------------------------------------------------------------------------------ vision tower
def normal_linear(din, dout, std, bias=True):
    m = nn.Linear(din, dout, bias=bias)
    nn.init.normal_(m.weight, 0.0, std)
    if bias:
        nn.init.zeros_(m.bias)
    return m


class VisionLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, std = c["hidden"], 1 / math.sqrt(c["hidden"])
        self.heads = c["heads"]
        self.layer_norm1 = nn.LayerNorm(D, eps=c["eps"])
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (normal_linear(D, D, std) for _ in range(4))
        self.layer_norm2 = nn.LayerNorm(D, eps=c["eps"])
        self.fc1 = normal_linear(D, c["intermediate"], std)
        self.fc2 = normal_linear(c["intermediate"], D, 1 / math.sqrt(c["intermediate"]))

    def forward(self, x):
        B, N, D = x.shape
        h = self.layer_norm1(x)
        q, k, v = (p(h).view(B, N, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        o = attend(q, k, v, causal=False).transpose(1, 2).reshape(B, N, D)
        x = x + self.out_proj(o)
        return x + self.fc2(F.gelu(self.fc1(self.layer_norm2(x)), approximate="tanh"))


class Vision(nn.Module):
    def __init__(self, c, image, patch):
        super().__init__()
        D, C, P = c["hidden"], c["channels"], patch
        self.patch_embedding = nn.Conv2d(C, D, kernel_size=P, stride=P)
        nn.init.normal_(self.patch_embedding.weight, 0.0, 1 / math.sqrt(C * P * P))
        nn.init.zeros_(self.patch_embedding.bias)
        n = (image // P) ** 2
        self.position_embedding = nn.Parameter(torch.randn(n, D) / math.sqrt(D))
        # hidden_states[k] is the output of layer k-1 (index 0 = embeddings): -2 -> the first layers - 1 layers
        fl = c["feature_layer"] % (c["layers"] + 1)
        self.layers = nn.ModuleList(VisionLayer(c) for _ in range(fl))

    def forward(self, px):
        x = self.patch_embedding(px).flatten(2).transpose(1, 2) + self.position_embedding
        for layer in self.layers:
            x = layer(x)
        return x


# ------------------------------------------------------------------------------------------------ decoder
def rope_tables(T, dim, theta):
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    f = torch.outer(torch.arange(T, dtype=torch.float32), inv)
    emb = torch.cat([f, f], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, std, hd = c["hidden"], c["std"], c["head_dim"]
        self.heads, self.kv_heads, self.hd = c["heads"], c["kv_heads"], hd
        self.input_layernorm = nn.RMSNorm(H, eps=c["eps"])
        self.q_proj = normal_linear(H, c["heads"] * hd, std)
        self.k_proj = normal_linear(H, c["kv_heads"] * hd, std)
        self.v_proj = normal_linear(H, c["kv_heads"] * hd, std)
        self.o_proj = normal_linear(c["heads"] * hd, H, std, bias=False)
        self.post_attention_layernorm = nn.RMSNorm(H, eps=c["eps"])
        self.gate_proj = normal_linear(H, c["intermediate"], std, bias=False)
        self.up_proj = normal_linear(H, c["intermediate"], std, bias=False)
        self.down_proj = normal_linear(c["intermediate"], H, std, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.kv_heads, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        o = attend(q, k, v, causal=True).transpose(1, 2).reshape(B, T, -1)
        x = x + self.o_proj(o)
        n = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(n)) * self.up_proj(n))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        nn.init.normal_(self.embed_tokens.weight, 0.0, c["std"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["layers"]))
        self.norm = nn.RMSNorm(c["hidden"], eps=c["eps"])

    def forward(self, x):
        cos, sin = rope_tables(x.shape[1], self.c["head_dim"], self.c["theta"])
        for layer in self.layers:
            x = layer(x, cos, sin)
        return F.linear(self.norm(x), self.embed_tokens.weight)  # tied LM head


class MLLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.vision = Vision(VISION, SHAPE["image"], SHAPE["patch"])
        self.projector = nn.Sequential(nn.Linear(PROJ[0], PROJ[1]), nn.GELU(), nn.Linear(PROJ[1], PROJ[2]))
        self.llm = Decoder(LLM)

    def forward(self, px, ids, repeat_images=1):
        img = self.projector(self.vision(px))  # [B, N, H]
        if repeat_images > 1:
            img = img.repeat(repeat_images, 1, 1)
        x = torch.cat([img, self.llm.embed_tokens(ids)], dim=1)
        return self.llm(x)  # [R, N + Lt, V]


def token_logps(logits, labels):
    """sum over response tokens of log p(label[t+1] | ..t) -> [R] (HF shift, -100 ignored)"""
    R, L, V = logits.shape
    lp = -F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100,
                          reduction="none")
    return lp.view(R, L - 1).sum(-1)


def main():
    torch.manual_seed(ARGS.seed)
    B, Lt, V = SHAPE["batch"], SHAPE["text"], SHAPE["vocab"]
    dpo = ARGS.step == "dpo"
    R = 2 * B if dpo else B
    policy = MLLM()
    ref = None
    if dpo:
        ref = MLLM()
        ref.load_state_dict(policy.state_dict())
        ref.requires_grad_(False)
        ref.eval()
    N = (SHAPE["image"] // SHAPE["patch"]) ** 2
    L = N + Lt
    g = torch.Generator(device="cpu").manual_seed(ARGS.seed * 7919 + 17)
    px = torch.rand(B, 3, SHAPE["image"], SHAPE["image"], generator=g, device="cpu") * 2 - 1
    ids = torch.randint(0, V, (R, Lt), generator=g, device="cpu")
    prompt = Lt - SHAPE["loss_tokens"]
    if dpo:
        ids[B:, :prompt] = ids[:B, :prompt]  # same prompt, different responses
    labels = torch.full((R, L), -100, dtype=torch.long, device="cpu")
    labels[:, N + prompt:] = ids[:, prompt:]
    px, ids, labels = px.to(ARGS.device), ids.to(ARGS.device), labels.to(ARGS.device)
    kw = {"foreach": ARGS.optimizer == "foreach", "fused": True} if ARGS.optimizer == "fused" else \
        {"foreach": ARGS.optimizer == "foreach"}
    opt = torch.optim.AdamW(policy.parameters(), lr=SHAPE["lr"], betas=SHAPE["betas"], eps=SHAPE["eps"],
                            weight_decay=SHAPE["weight_decay"], **kw)
    nparams = sum(p.numel() for p in policy.parameters())

    def step():
        if dpo:
            lp = token_logps(policy(px, ids, repeat_images=2), labels)
            with torch.no_grad():
                rlp = token_logps(ref(px, ids, repeat_images=2), labels)
            h = (lp[:B] - rlp[:B]) - (lp[B:] - rlp[B:])
            loss = -F.logsigmoid(SHAPE["beta"] * h).mean()
        else:
            logits = policy(px, ids)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(policy.parameters(), SHAPE["max_grad_norm"],
                                            foreach=ARGS.optimizer != "loop")
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item(), float(gn)

    t_built = time.perf_counter()
    losses, times = [], []
    for _ in range(ARGS.warmup):
        losses.append(step()[0])
    gn = 0.0
    for _ in range(ARGS.steps):
        t0 = time.perf_counter()
        loss, gn = step()
        times.append(time.perf_counter() - t0)
        losses.append(loss)
    prof = None
    if ARGS.profile:
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as p:
            for _ in range(3):
                step()
        prof = p.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    print("RESULT " + json.dumps({
        "step": ARGS.step, "backend": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(),
        "env": env, "times": times, "losses": losses, "grad_norm": gn, "params": nparams,
        "optimizer": ARGS.optimizer, "attention": ARGS.attention, "device": ARGS.device,
        "import_s": t_import - t_start, "build_s": t_built - t_import,
        "rss_after_import_kb": IMPORT_RSS_KB, "profile_steps": 3 if prof else 0}), flush=True)
    if prof:
        print("PROFILE BEGIN\n" + prof.rstrip() + "\nPROFILE END", flush=True)


def current_rss_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


IMPORT_RSS_KB = current_rss_kb()

if __name__ == "__main__":
    sys.exit(main())
