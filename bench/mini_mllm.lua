-- bench/mini_mllm.lua: pivot's side of the mini-MLLM training-step benchmark (bench/run.sh drives it).
--
--   pivot run bench/mini_mllm.lua --step sft|dpo [--backend cpu|vulkan] [--threads 2] [--warmup 2] [--steps 5]
--                                 [--profile] [--profile-steps 3] [--seed 1]
--
-- Builds the mini MLLM (SigLIP-style tower -> 2-layer GELU projector -> Qwen2-style decoder, the shapes below) and
-- one training-step plan: forward, g:backward, global-norm clipping (max 1.0) and pv_adamw on every parameter, with
-- the AdamW hyper-parameters in an input tensor (as pivot.toy does; the trainer library is not used). DPO adds a
-- frozen reference copy of the model in the same graph (initialised to the policy's values).
-- Runs `warmup` untimed steps, then `steps` timed steps, then (with --profile) `profile-steps` more with per-op
-- profiling on, and prints one line `RESULT {json}` (step times in seconds, losses, plan sizes) and, with
-- --profile, the profile between `PROFILE BEGIN` / `PROFILE END`. A plan that does not compile on the backend
-- prints `RESULT {"unsupported": "reason"}` and exits 0. Peak RSS is measured by the caller (wait4).
local pv = require "pivot"
local mllm = require "pivot.models.mllm"
local obj = require "pivot.objectives"
local json = require "pivot.json"
local ffi = require "ffi"

local opts = ... or {}
local STEP = opts.step or "sft"
local BACKEND = opts.backend or "cpu"
local THREADS = tonumber(opts.threads) or 2
local WARMUP = tonumber(opts.warmup) or 2
local STEPS = tonumber(opts.steps) or 5
local PROFILE_STEPS = tonumber(opts.profile_steps) or 3
local SEED = tonumber(opts.seed) or 1
if STEP ~= "sft" and STEP ~= "dpo" then error("--step must be sft or dpo, got " .. tostring(STEP)) end

-- the shapes of the benchmark (kept equal to bench/torch_mllm.py)
local SHAPE = {
  batch = 8, image = 32, patch = 4, text = 32, loss_tokens = 16, vocab = 512,
  lr = 1e-4, betas = {0.9, 0.999}, eps = 1e-8, weight_decay = 0.01, max_grad_norm = 1.0, beta = 0.1,
}
local CFG = {
  vision = {hidden_size = 128, intermediate_size = 512, num_hidden_layers = 4, num_attention_heads = 4,
    num_channels = 3, image_size = SHAPE.image, patch_size = SHAPE.patch, hidden_act = "gelu_pytorch_tanh",
    layer_norm_eps = 1e-6},
  llm = {vocab_size = SHAPE.vocab, hidden_size = 256, intermediate_size = 704, num_hidden_layers = 4,
    num_attention_heads = 8, num_key_value_heads = 2, head_dim = 32, hidden_act = "silu", rms_norm_eps = 1e-6,
    rope_theta = 1e6, initializer_range = 0.02, tie_word_embeddings = true, use_sliding_window = false},
  projector = {128, 256, 256},
  vision_feature_layer = -2,
}

ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } pvb_timespec;
  int clock_gettime(int clk, pvb_timespec *ts);
]]
local ts = ffi.new("pvb_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- a deterministic generator (Park-Miller)
local function rng(seed)
  local x = (math.floor(seed) % 2147483646) + 1
  return function()
    x = (16807 * x) % 2147483647
    return x / 2147483647
  end
end

local function emit(t) io.write("RESULT ", json.encode(t), "\n") io.flush() end

local t_start = now()
local ctx = pv.context{threads = THREADS, seed = SEED}
local policy = mllm.new(ctx, CFG)
local B, Lt, N, V = SHAPE.batch, SHAPE.text, policy.num_image_tokens, SHAPE.vocab
local L = N + Lt
local R = STEP == "dpo" and 2 * B or B -- text rows through the policy

local ref
if STEP == "dpo" then
  ref = mllm.new(ctx, CFG, {prefix = "ref"}):freeze()
  -- the reference starts as a copy of the policy
  local rp = ref:parameters()
  for i, p in ipairs(policy:parameters()) do rp[i].var:write(p.var:read_raw("f32"), "f32") end
end

---------------------------------------------------------------------------------------------------- the step graph
local g = ctx:graph()
local px = g:input("pixel_values", {B, 3, SHAPE.image, SHAPE.image})
local ids = g:input("input_ids", {R, Lt}, "i32")
local labels = g:input("labels", {R, L}, "i32")
local hyper = g:input("adamw.hyper", {6})

local loss, extra
if STEP == "sft" then
  local out = policy:forward(g, {pixel_values = px, input_ids = ids})
  loss = obj.sft_loss(g, out.logits, labels)
else
  local out = policy:forward(g, {pixel_values = px, input_ids = ids, repeat_images = 2})
  local lp = obj.sequence_logps(g, out.logits, labels)
  local rout = ref:forward(g, {pixel_values = px, input_ids = ids, repeat_images = 2})
  local rlp = obj.sequence_logps(g, rout.logits, labels)
  local d = obj.dpo(g, {policy_chosen = lp:slice(0, 0, B), policy_rejected = lp:slice(0, B, 2 * B),
    reference_chosen = rlp:slice(0, 0, B), reference_rejected = rlp:slice(0, B, 2 * B), beta = SHAPE.beta})
  loss = d.loss
  extra = d
end
loss:set_name("loss")
loss:mark_output()
g:backward(loss)

-- global-norm clipping and AdamW (weight decay on every parameter, as torch.optim.AdamW(weight_decay=0.01))
local params = policy:parameters()
local items, sq = {}, {}
for _, p in ipairs(params) do
  local node = g:use(p.var)
  local gr = g:grad(node)
  if gr then
    items[#items + 1] = {p = p, node = node, grad = gr}
    sq[#sq + 1] = gr:sumsq()
  end
end
local norm = pv.concat(sq, 0):sum_all():sqrt()
norm:set_name("grad_norm")
norm:mark_output()
local coef = 1 / (norm:scale(1 / SHAPE.max_grad_norm):add_scalar(-1):relu():add_scalar(1)) -- min(1, max/norm)
local nparams = 0
local hyper_c = pv.concat({hyper, coef}, 0) -- the clip coefficient as AdamW's 7th hyper entry (scales the gradient)
for _, it in ipairs(items) do
  local v = it.p.var
  local m = ctx:var("adamw.m." .. v.name, v.shape)
  local s = ctx:var("adamw.v." .. v.name, v.shape)
  g:adamw(it.node, it.grad, m, s, hyper_c, 1, SHAPE.weight_decay)
  nparams = nparams + v.numel
end

local t_graph = now()
local ok, plan = pcall(function() return g:compile{backend = BACKEND, threads = THREADS} end)
if not ok then
  emit({step = STEP, backend = BACKEND, unsupported = tostring(plan):gsub("\n.*", "")})
  return 0
end
local t_compiled = now()

---------------------------------------------------------------------------------------------------- the batch
local rand = rng(SEED * 7919 + 17)
local pix = pv.array("f32", B * 3 * SHAPE.image * SHAPE.image)
for i = 0, B * 3 * SHAPE.image * SHAPE.image - 1 do pix[i] = rand() * 2 - 1 end
local idv = pv.array("i32", R * Lt)
local lab = pv.array("i32", R * L)
local prompt = Lt - SHAPE.loss_tokens
for r = 0, R - 1 do
  for t = 0, Lt - 1 do
    local id
    if STEP == "dpo" and r >= B and t < prompt then id = idv[(r - B) * Lt + t] -- same prompt as the chosen row
    else id = math.floor(rand() * V) end
    idv[r * Lt + t] = id
  end
  -- labels: -100 on the image tokens and the prompt, the ids on the last loss_tokens text positions
  for t = 0, L - 1 do
    local tt = t - N
    lab[r * L + t] = (tt >= prompt) and idv[r * Lt + tt] or -100
  end
end
plan:write(px, pix)
plan:write(ids, idv)
plan:write(labels, lab)

local b1, b2 = SHAPE.betas[1], SHAPE.betas[2]
local step_no = 0
local function step()
  step_no = step_no + 1
  plan:write(hyper, {SHAPE.lr, b1, b2, SHAPE.eps, 1 - b1 ^ step_no, 1 - b2 ^ step_no})
  plan:run()
  return plan:item(loss)
end

local ok_run, err = pcall(function()
  local losses, times = {}, {}
  for _ = 1, WARMUP do losses[#losses + 1] = step() end
  for i = 1, STEPS do
    local t0 = now()
    losses[#losses + 1] = step() -- reading the loss is part of the step (as loss.item() in torch)
    times[i] = now() - t0
  end
  local prof
  if opts.profile then
    plan:set_profiling(true)
    for _ = 1, PROFILE_STEPS do step() end
    prof = plan:profile()
  end
  emit({step = STEP, backend = plan:backend(), threads = THREADS, times = times, losses = losses,
    grad_norm = plan:item(norm), params = nparams, peak_bytes = plan:peak_bytes(), naive_bytes = plan:naive_bytes(),
    nodes = plan:node_count(), build_s = t_graph - t_start, compile_s = t_compiled - t_graph,
    profile_steps = opts.profile and PROFILE_STEPS or 0})
  if prof then io.write("PROFILE BEGIN\n", prof, "PROFILE END\n") end
end)
if not ok_run then
  local msg = tostring(err):gsub("\n.*", "")
  if BACKEND ~= "cpu" then -- a backend that compiles but cannot run an op yet
    emit({step = STEP, backend = BACKEND, unsupported = msg})
    return 0
  end
  error(err, 0)
end
return 0
