-- pivot.pretrain: stage 0, contrastive image-text pretraining of a vision tower on the world's captions with the
-- SigLIP sigmoid loss (so the encoder starts from something like a pretrained SigLIP).
--
--   local pretrain = require "pivot.pretrain"
--   local r = pretrain.run(ctx, tower, world, {steps = 300, batch = 32, lr = 1e-3, tok = tok})
--   r.curve      -- {{step, loss}, ...}
--   r.accuracy   -- {{step, image->text top-1 within the batch}, ...}
--   r.loss, r.text_tower, r.image_proj, r.trainer
--
-- Model: image embedding = Linear(mean over patches of tower:forward(px).features); text embedding = a small text
-- tower (pivot.models.text_tower) over the caption tokens; both L2-normalised. logits = exp(t) * img·txtᵀ + b with
-- learnable t (init log 10) and b (init -10); loss = -mean over all B² pairs of logsigmoid(z_ij * logits_ij), z = +1
-- on the diagonal (matching pairs) and -1 elsewhere (SigLIP).
-- Training: pivot.train's trainer (AdamW, cosine schedule with warmup, grad-norm clipping; metrics.jsonl and
-- checkpoints when opts.out_dir is given). Data: world samples (seed, 0..), B per step, captions tokenized with
-- opts.tok (default: a world tokenizer built into opts.tokenizer_path or a temporary file).
-- opts: steps (300), batch (32), lr (1e-3), weight_decay (1e-4), warmup_ratio (0.05), max_grad_norm (1.0), seed (0),
-- tok, text = {dim, layers, heads, max_len} (text_tower config; vocab from the tokenizer), embed_dim (64),
-- prefix ("stage0"), out_dir, quiet, threads, backend, on_step(metrics) (return false to stop), lr_mult.
local pv = require "pivot"
local nn = require "pivot.nn"
local train = require "pivot.train"
local text_tower = require "pivot.models.text_tower"
local probe = require "pivot.eval.probe"
local ffi = pv.ffi

local M = {}

M.defaults = {steps = 300, batch = 32, lr = 1e-3, weight_decay = 1e-4, warmup_ratio = 0.05, max_grad_norm = 1.0,
  seed = 0, embed_dim = 64, prefix = "stage0"}

local function l2norm(x) return x * x:square():sum(-1, true):add_scalar(1e-12):rsqrt() end

-- the SigLIP loss of a [B, B] logits matrix and a [B, B] z matrix (+1 / -1) -> [1]
function M.siglip_loss(logits, z)
  return -((z * logits):logsigmoid():mean())
end

-- z = 2 I - 1 as a flat Lua list
local function z_matrix(B)
  local z = {}
  for i = 0, B - 1 do for j = 0, B - 1 do z[i * B + j + 1] = i == j and 1 or -1 end end
  return z
end

local function world_tokenizer(ctx, world, opts)
  if opts.tok then return opts.tok end
  local wt = require "pivot.world_tokenizer"
  local path = opts.tokenizer_path or os.tmpname()
  wt.build(world:vocabulary(), path)
  local tok = ctx:tokenizer(path)
  if not opts.tokenizer_path then os.remove(path) end
  return tok
end

-- pretrain.models(ctx, tower, vocab, opts) -> {text, image_proj, scalars}: the stage-0 heads (reused if they exist)
function M.models(ctx, tower, vocab, opts)
  local prefix = opts.prefix or M.defaults.prefix
  local E = opts.embed_dim or M.defaults.embed_dim
  local tc = {vocab = vocab, out_dim = E}
  for k, v in pairs(opts.text or {}) do tc[k] = v end
  local text = text_tower.new(ctx, prefix .. ".text", tc)
  local Dv = tower.cfg.hidden_size
  local image_proj = nn.linear(ctx, prefix .. ".image_proj", Dv, E)
  local scalars = nn.module(ctx, prefix .. ".logit")
  scalars:param("scale", {1}, {init = math.log(10), no_decay = true})
  scalars:param("bias", {1}, {init = -10, no_decay = true})
  return {text = text, image_proj = image_proj, scalars = scalars}
end

-- pretrain.run(ctx, tower, world, opts) -> {curve, accuracy, loss, text_tower, image_proj, trainer}
function M.run(ctx, tower, world, opts)
  opts = opts or {}
  local o = {}
  for k, v in pairs(M.defaults) do o[k] = v end
  for k, v in pairs(opts) do o[k] = v end
  local tok = world_tokenizer(ctx, world, o)
  local B = o.batch
  local heads = M.models(ctx, tower, tok:vocab_size(), o)
  local T = heads.text.cfg.max_len
  local S, _, _, _, Ch = probe.tower_geometry(tower)
  local build = function(g)
    local px = g:input("stage0.pixel_values", {B, Ch, S, S})
    local ids = g:input("stage0.ids", {B, T}, "i32")
    local mask = g:input("stage0.mask", {B, T})
    local z = g:input("stage0.z", {B, B})
    local feats = tower:forward(g, px).features:mean(1) -- [B, Dv]
    local img = l2norm(heads.image_proj:forward(g, feats))
    local txt = l2norm(heads.text:forward(g, ids, mask))
    local t = heads.scalars:p(g, "scale")
    local b = heads.scalars:p(g, "bias")
    local logits = img:matmul(txt, false, true) * t:exp() + b -- [B, B]
    return {loss = M.siglip_loss(logits, z), outputs = {logits = logits, logit_scale = t:exp(), logit_bias = b},
      inputs = {px = px, ids = ids, mask = mask, z = z}}
  end
  local tr = train.new{ctx = ctx, model = {tower, heads.text, heads.image_proj, heads.scalars}, build = build,
    lr = o.lr, steps = o.steps, schedule = o.schedule or "cosine", warmup_ratio = o.warmup_ratio,
    max_grad_norm = o.max_grad_norm, weight_decay = o.weight_decay, lr_mult = o.lr_mult, out_dir = o.out_dir,
    quiet = o.quiet ~= false, threads = o.threads, backend = o.backend, log_every = o.log_every}
  local per_img = Ch * S * S
  local pixels = ffi.new("float[?]", B * per_img)
  local ids = ffi.new("int32_t[?]", B * T)
  local mask = ffi.new("float[?]", B * T)
  local z = z_matrix(B)
  local pad = o.pad_id or 0
  local curve, acc_curve = {}, {}
  local index = o.start_index or 0
  local last
  for step = 1, o.steps do
    for b = 0, B - 1 do
      local s = world:sample(o.seed, index)
      index = index + 1
      probe.pixels(ctx, s, S, pixels, b * per_img)
      local t = tok:encode(s.caption)
      for k = 0, T - 1 do
        local v = t[k + 1]
        ids[b * T + k] = v or pad
        mask[b * T + k] = v and 1 or 0
      end
    end
    local m = tr:step{bucket = "stage0", feeds = {px = pixels, ids = ids, mask = mask, z = z}}
    -- image -> text top-1 within the batch
    local L, right = m.logits, 0
    for i = 0, B - 1 do
      local best, bj = -math.huge, -1
      for j = 0, B - 1 do
        if L[i * B + j + 1] > best then best, bj = L[i * B + j + 1], j end
      end
      if bj == i then right = right + 1 end
    end
    curve[#curve + 1] = {step, m.loss}
    acc_curve[#acc_curve + 1] = {step, right / B}
    last = m.loss
    if o.on_step and o.on_step({step = step, loss = m.loss, accuracy = right / B, logit_scale = m.logit_scale,
      logit_bias = m.logit_bias, learning_rate = m.learning_rate, grad_norm = m.grad_norm}) == false then
      break
    end
  end
  if o.out_dir and tr.last_saved_step ~= tr.step_count then tr:save() end
  return {curve = curve, accuracy = acc_curve, loss = last, text_tower = heads.text, image_proj = heads.image_proj,
    scalars = heads.scalars, trainer = tr, tok = tok, next_index = index}
end

return M
