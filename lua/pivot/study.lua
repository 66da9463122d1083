-- pivot.study: the shared pipeline of the miniature PIVOT study (stage 1 -> SFT | DPO) on the built-in world or
-- on real data (JSONL + images). Every recipe in recipes/ is a few calls of this module.
--
--   local study = require "pivot.study"
--   local ctx = pv.context{threads = 2, seed = 1}
--   local env = study.world(ctx, {out_dir = "runs/x"})              -- world + tokenizer (tokenizer.json written once)
--   local cfg = study.mini_config{vocab_size = env.vocab_size}      -- small MLLM config ({llm = "medium"}, ...)
--   local model = study.model(ctx, cfg)
--   local s1 = study.stage1(ctx, model, env.world, env.tok, {out_dir = "runs/x/stage1",
--     tokenizer_path = env.tokenizer_path})                         -- 1a + 1b; saves a checkpoint folder
--   local pairs = study.world_pairs(env, {count = 150})            -- encoded preference pairs (post-training split)
--   local r = study.dpo(ctx, model, pairs, {out_dir = "runs/x/dpo", steps = 40})   -- reference = model as it is now
--   -- study.sft(ctx2, study.load_model(ctx2, s1.dir), pairs, {...}): the chosen answers, same batches and steps
--   -- study.pipeline{out = "runs/x", seed = 1}: all of it (stage 1, then SFT and DPO from its checkpoint)
--
-- Examples (what the loaders take) are tables {id, image = float cdata [3*S*S] or a file path, prompt, type,
-- attribute} with either answer (SFT) or chosen + rejected (pairs); study.encode_examples adds the token ids.
-- The prompt may contain "<image>"; it is moved to the front of the user turn (as LLaVA's preprocess does).
--
-- Defaults and their reasons (the paper's values are for 2B models trained for 3 epochs of 20K pairs; this
-- miniature trains a few hundred steps from scratch, so its learning rates are larger, with the paper's ratios):
--   stage 1a: projector only, captions, lr 1e-3 (the paper's value), 30 steps of 16
--   stage 1b: everything, captions + questions, lr 1e-3, vision tower x0.2 (the paper's 2e-6 / 1e-5), 120 steps
--   SFT lr 5e-4, DPO lr 1e-4: the paper's 5 : 1 (5e-6 / 1e-6). Measured on the world, 40 steps of 8 pairs from
--   a stage-1 checkpoint: SFT 2e-4..5e-4 and DPO 1e-4..2e-4 lower their losses (DPO 0.692 -> 0.684, rewards/
--   accuracies 0.6-0.75); SFT 1e-3 stalls and DPO 5e-4..1e-3 drifts upwards (0.69 -> 0.71-0.75 on unseen pairs).
--   beta 0.1, sigmoid loss; AdamW 0.9/0.999/1e-8, weight decay 0, cosine with 3% warmup, grad-norm clip 1.0.
local pv = require "pivot"
local mllm = require "pivot.models.mllm"
local obj = require "pivot.objectives"
local chat = require "pivot.chat"
local data = require "pivot.data"
local json = require "pivot.json"
local train = require "pivot.train"
local ckpt = require "pivot.train.checkpoint"
local log = require "pivot.train.log"
local ffi = require "ffi"

local M = {}

-- world index ranges of the splits (stage 1, post-training pairs, held-out evaluation)
M.SPLITS = {stage1 = 0, post = 1000000, eval = 2000000, stage0 = 3000000}

M.DEFAULTS = {
  batch_size = 16,          -- stage 1 rows per step; SFT/DPO pairs per step
  stage1_images = 1000, steps_1a = 30, steps_1b = 120, lr_1a = 1e-3, lr_1b = 1e-3, vision_lr_mult = 0.2,
  post_images = 150, post_steps = 40, post_batch_size = 8, sft_lr = 5e-4, dpo_lr = 1e-4, beta = 0.1,
  loss_type = "sigmoid", warmup_ratio = 0.03, schedule = "cosine", max_grad_norm = 1.0, max_buckets = 3,
  max_text_len = 512, image_mode = "placeholder",
}

---------------------------------------------------------------------------------------------------- config
-- LLM heads for the scaling study (Qwen2 layout: GQA, tied embeddings, SiLU MLP)
M.LLM_SIZES = {
  tiny = {hidden = 64, layers = 1, heads = 2, kv_heads = 1, intermediate = 128},
  small = {hidden = 128, layers = 2, heads = 4, kv_heads = 2, intermediate = 384},
  medium = {hidden = 192, layers = 3, heads = 6, kv_heads = 2, intermediate = 576},
  large = {hidden = 256, layers = 4, heads = 8, kv_heads = 2, intermediate = 768},
}
M.VISION_SIZES = {
  tiny = {hidden = 32, layers = 2, heads = 2, intermediate = 64},
  small = {hidden = 96, layers = 4, heads = 4, intermediate = 384},
}

-- study.mini_config(opts) -> {vision = SigLIP config table, llm = Qwen2 config table, projector = {Dv, H, H},
-- vision_feature_layer = -2}. opts: vocab_size (default 512), preset ("small" default, "tiny" for tests),
-- llm ("tiny" | "small" | "medium" | "large" or a table of the fields below), image_size (32), patch_size (4),
-- vision_width, vision_layers, vision_heads, vision_mlp, feature_layer (-2), llm_width, llm_layers, llm_heads,
-- llm_kv_heads, llm_mlp, rope_theta (1e6).
function M.mini_config(opts)
  opts = opts or {}
  local preset = opts.preset or "small"
  local vs = M.VISION_SIZES[preset] or pv.raise("mini_config: unknown preset '" .. tostring(preset) .. "'")
  local ls = opts.llm or preset
  if type(ls) == "string" then
    ls = M.LLM_SIZES[ls] or pv.raise("mini_config: unknown llm size '" .. tostring(opts.llm) .. "'")
  end
  local H = opts.llm_width or ls.hidden
  local heads = opts.llm_heads or ls.heads
  local Dv = opts.vision_width or vs.hidden
  local vision = {model_type = "siglip_vision_model", hidden_size = Dv,
    intermediate_size = opts.vision_mlp or (opts.vision_width and 4 * Dv or vs.intermediate),
    num_hidden_layers = opts.vision_layers or vs.layers, num_attention_heads = opts.vision_heads or vs.heads,
    num_channels = 3, image_size = opts.image_size or 32, patch_size = opts.patch_size or 4,
    hidden_act = "gelu_pytorch_tanh", layer_norm_eps = 1e-6, vision_use_head = false}
  local llm = {model_type = "qwen2", vocab_size = opts.vocab_size or 512, hidden_size = H,
    intermediate_size = opts.llm_mlp or (opts.llm_width and 3 * H or ls.intermediate),
    num_hidden_layers = opts.llm_layers or ls.layers, num_attention_heads = heads,
    num_key_value_heads = opts.llm_kv_heads or ls.kv_heads, hidden_act = "silu", rms_norm_eps = 1e-6,
    rope_theta = opts.rope_theta or 1e6, tie_word_embeddings = true, initializer_range = 0.02,
    max_position_embeddings = 1024, use_sliding_window = false}
  return {model_type = "pivot_mllm", vision = vision, llm = llm, projector = {Dv, H, H},
    vision_feature_layer = opts.feature_layer or -2}
end

-- study.model(ctx, cfg [, {prefix = "ref"}]) -> a pivot.models.mllm
function M.model(ctx, cfg, opts)
  opts = opts or {}
  return mllm.new(ctx, cfg, {prefix = opts.prefix, vision_feature_layer = cfg.vision_feature_layer})
end

---------------------------------------------------------------------------------------------------- world, text
local function file_exists(p) return data.file_exists(p) end

-- study.world(ctx, opts) -> env {world, tok, tokenizer_path, vocab_size, pad_id, image_size, world_cfg, image_mode,
-- system}. opts: out_dir (the world tokenizer.json is built there once; default a temp folder), tokenizer_path
-- (use this tokenizer.json instead, e.g. a checkpoint's), world (pivot.world config overrides), image_mode
-- ("placeholder" | "prefix"), system (the system message; false: none).
function M.world(ctx, opts)
  opts = opts or {}
  local world = require "pivot.world"
  local w = world.new(ctx, opts.world)
  local path = opts.tokenizer_path
  local built = false
  if not path then
    local dir = opts.out_dir or ("/tmp/pivot-study-" .. ckpt.getpid())
    data.mkdir(dir)
    path = dir .. "/tokenizer.json"
    if not file_exists(path) then
      require("pivot.world_tokenizer").build(w:vocabulary(), path)
      built = true
    end
  end
  local env = M.text_env(ctx, path, opts)
  env.world, env.image_size, env.world_cfg, env.built = w, w.S, w.cfg, built
  return env
end

-- A tokenizer environment for real data: {tok, tokenizer_path, vocab_size, pad_id, image_mode, system}
function M.text_env(ctx, tokenizer_path, opts)
  opts = opts or {}
  local tok = ctx:tokenizer(tokenizer_path)
  return {tok = tok, tokenizer_path = tokenizer_path, vocab_size = tok:vocab_size(),
    pad_id = tok:token_to_id("<|endoftext|>") or 0, image_mode = opts.image_mode or M.DEFAULTS.image_mode,
    system = opts.system}
end

-- study.encode_sample(tok, prompt, answer, opts) -> {ids, labels, image_pos, prompt_len, text} (pivot.chat.build)
-- opts.image_mode: "placeholder" (default: one <image> id at image_pos, replaced by the image tokens) or
-- "prefix" (no image text: the image tokens go in front of the text); opts.system as pivot.chat.
function M.encode_sample(tok, prompt, answer, opts)
  opts = opts or {}
  local q = prompt:gsub("<image>\n?", ""):gsub("^%s+", "")
  local mode = opts.image_mode or M.DEFAULTS.image_mode
  if mode ~= "placeholder" and mode ~= "prefix" then
    pv.raise("encode_sample: image_mode must be 'placeholder' or 'prefix', got " .. tostring(mode))
  end
  return chat.build(tok, q, answer, {image_token = mode == "placeholder" and "<image>" or false, system = opts.system})
end

-- Adds the token ids to examples (in place) and returns the kept ones (longer than max_text_len are dropped):
-- SFT examples get .enc, pairs .chosen_enc and .rejected_enc; all get .len (the text length that picks the bucket:
-- the longer of chosen and rejected, so SFT and DPO batch a pair list identically). -> kept, n_dropped
function M.encode_examples(env, examples, opts)
  opts = opts or {}
  local maxlen = opts.max_text_len or M.DEFAULTS.max_text_len
  local eo = {image_mode = env.image_mode, system = env.system}
  local kept, dropped = {}, 0
  for _, ex in ipairs(examples) do
    if ex.chosen then
      ex.chosen_enc = ex.chosen_enc or M.encode_sample(env.tok, ex.prompt, ex.chosen, eo)
      ex.rejected_enc = ex.rejected_enc or M.encode_sample(env.tok, ex.prompt, ex.rejected, eo)
      ex.len = math.max(#ex.chosen_enc.ids, #ex.rejected_enc.ids)
      ex.image_pos = ex.chosen_enc.image_pos
    else
      ex.enc = ex.enc or M.encode_sample(env.tok, ex.prompt, ex.answer, eo)
      ex.len = #ex.enc.ids
      ex.image_pos = ex.enc.image_pos
    end
    if ex.len <= maxlen then kept[#kept + 1] = ex else dropped = dropped + 1 end
  end
  return kept, dropped
end

---------------------------------------------------------------------------------------------------- examples
-- study.world_examples(w, kind, {seed, first, count}) -> examples of world images first .. first+count-1:
-- kind "caption" (one per image), "questions" (every question), "stage1" (both), "pairs" (every preference pair)
function M.world_examples(w, kind, opts)
  opts = opts or {}
  local world = require "pivot.world"
  local seed, first, count = opts.seed or 1, opts.first or 0, opts.count or 100
  local out = {}
  for index = first, first + count - 1 do
    local s = w:sample(seed, index)
    if kind == "caption" or kind == "stage1" then
      out[#out + 1] = {id = s.id .. "-caption", image = s.image, prompt = "<image>\n" .. world.CAPTION_PROMPT,
        answer = s.caption, type = "caption"}
    end
    if kind == "questions" or kind == "stage1" then
      for j, q in ipairs(s.questions) do
        out[#out + 1] = {id = string.format("%s-q%d", s.id, j), image = s.image, prompt = "<image>\n" .. q.question,
          answer = q.answer, type = q.type, attribute = q.attribute}
      end
    end
    if kind == "pairs" then
      for j, p in ipairs(s.pairs) do
        out[#out + 1] = {id = string.format("%s-p%d", s.id, j), image = s.image, prompt = p.prompt, chosen = p.chosen,
          rejected = p.rejected, type = p.type, attribute = p.attribute}
      end
    end
    if kind ~= "caption" and kind ~= "questions" and kind ~= "stage1" and kind ~= "pairs" then
      pv.raise("world_examples: unknown kind '" .. tostring(kind) .. "'")
    end
  end
  return out
end

-- Encoded preference pairs of the world's post-training split: study.world_pairs(env, {seed, first, count})
function M.world_pairs(env, opts)
  opts = opts or {}
  local ex = M.world_examples(env.world, "pairs", {seed = opts.seed or 1, first = opts.first or M.SPLITS.post,
    count = opts.count or M.DEFAULTS.post_images})
  return (M.encode_examples(env, ex, opts))
end

-- study.jsonl_examples(path, opts) -> examples from a JSONL file in the paper's formats (pivot.data.read_jsonl):
-- DPO lines give pairs; SFT lines (conversations) give SFT examples. opts: image_root, kind ("pairs" | "sft" |
-- "auto"; "sft" turns DPO lines into their chosen answers, as the paper's SFT does), limit, skip_bad.
function M.jsonl_examples(path, opts)
  opts = opts or {}
  local items = data.read_jsonl(path, {image_root = opts.image_root, limit = opts.limit, skip_bad = opts.skip_bad})
  local kind = opts.kind or "auto"
  local out = {}
  for _, it in ipairs(items) do
    if it.format == "dpo" and kind ~= "sft" then
      out[#out + 1] = {id = it.id, image = it.image, prompt = it.prompt, chosen = it.chosen, rejected = it.rejected,
        type = it.type or "pair"}
    elseif it.format == "dpo" then
      out[#out + 1] = {id = it.id, image = it.image, prompt = it.prompt, answer = it.chosen, type = "sft"}
    elseif kind == "pairs" then
      pv.raise(string.format("%s:%d: an SFT line where preference pairs are needed", path, it.line or 0))
    else
      out[#out + 1] = {id = it.id, image = it.image, prompt = it.prompt, answer = it.response, type = "sft"}
    end
  end
  return out
end

---------------------------------------------------------------------------------------------------- batching
-- Bucket lengths: at most max_buckets text lengths that minimise the padding of the examples, each bucket
-- holding at least min_count examples (so every bucket fills batches). Dynamic programming over the distinct
-- lengths. -> sorted list of lengths
function M.choose_buckets(examples, max_buckets, min_count)
  max_buckets, min_count = max_buckets or M.DEFAULTS.max_buckets, min_count or 1
  local count, lens = {}, {}
  for _, ex in ipairs(examples) do
    if not count[ex.len] then lens[#lens + 1] = ex.len end
    count[ex.len] = (count[ex.len] or 0) + 1
  end
  table.sort(lens)
  local n = #lens
  if n == 0 then return {} end
  -- cost(i, j): padding of lengths i..j into a bucket of length lens[j]; items(i, j)
  local pre_n, pre_s = {[0] = 0}, {[0] = 0}
  for i = 1, n do
    pre_n[i] = pre_n[i - 1] + count[lens[i]]
    pre_s[i] = pre_s[i - 1] + count[lens[i]] * lens[i]
  end
  local function items(i, j) return pre_n[j] - pre_n[i - 1] end
  local function cost(i, j) return items(i, j) * lens[j] - (pre_s[j] - pre_s[i - 1]) end
  local INF = math.huge
  local best, from = {}, {}
  for k = 1, max_buckets do
    best[k], from[k] = {}, {}
    for j = 1, n do
      best[k][j] = INF
      if k == 1 then
        if items(1, j) >= min_count or j == n then best[k][j] = cost(1, j) end
      else
        for i = k, j do
          local prev = best[k - 1][i - 1]
          if prev < INF and items(i, j) >= min_count then
            local c = prev + cost(i, j)
            if c < best[k][j] then best[k][j], from[k][j] = c, i end
          end
        end
      end
    end
  end
  local kbest, cbest = 1, best[1][n]
  for k = 2, max_buckets do if best[k][n] < cbest then kbest, cbest = k, best[k][n] end end
  local out, j = {}, n
  for k = kbest, 1, -1 do
    table.insert(out, 1, lens[j])
    j = k > 1 and from[k][j] - 1 or 0
  end
  return out
end

local Loader = {}
Loader.__index = Loader
M.Loader = Loader

-- study.loader(ctx, examples, opts) -> a loader for the trainer (next, state, restore): batches of B examples
-- of one bucket (text length, image position), in a seeded order per epoch (length-grouped like LLaVA's
-- group_by_modality_length; a bucket's leftover examples wait for the next epoch's shuffle).
-- opts: batch_size (B), mode ("sft": examples with answers; "pair_sft": the chosen answers of pairs; "dpo": rows
-- [chosen; rejected]), seed, epochs (default unlimited), buckets (default choose_buckets), max_buckets,
-- image_size, n_image_tokens, pad_id, cache (a pivot.refcache: feeds ref_chosen_logps / ref_rejected_logps),
-- cache_average (feed the length-averaged logps, for ipo), cover_all (every example once, the last batch of a
-- bucket padded with repeats that have batch.pad[r] = true; for forward passes), shuffle (default true).
-- Each batch: {bucket = {len, pos}, feeds = {pixel_values, input_ids, labels [, ref_*]}, epoch, indices, pad}.
function M.loader(ctx, examples, opts)
  local B = opts.batch_size or pv.raise("loader: batch_size is required")
  local mode = opts.mode or "sft"
  if mode ~= "sft" and mode ~= "pair_sft" and mode ~= "dpo" then pv.raise("loader: unknown mode " .. tostring(mode)) end
  if #examples == 0 then pv.raise("loader: no examples") end
  local self = setmetatable({ctx = ctx, examples = examples, B = B, mode = mode, seed = opts.seed or 1,
    epochs = opts.epochs or math.huge, image_size = opts.image_size or 32, n_img = opts.n_image_tokens or 64,
    pad_id = opts.pad_id or 0, cache = opts.cache, cache_average = opts.cache_average, cover_all = opts.cover_all,
    shuffle = opts.shuffle ~= false, epoch = 0, pos = 0}, Loader)
  self.buckets = opts.buckets or M.choose_buckets(examples, opts.max_buckets, opts.cover_all and 1 or B)
  local maxb = self.buckets[#self.buckets]
  self.bucket_of = {}
  for i, ex in ipairs(examples) do
    if not ex.len then pv.raise("loader: example " .. tostring(ex.id or i) .. " is not encoded (encode_examples)") end
    for _, b in ipairs(self.buckets) do
      if b >= ex.len then self.bucket_of[i] = b break end
    end
    if not self.bucket_of[i] then
      pv.raise(string.format("loader: example %s has %d tokens, more than the largest bucket %d", tostring(ex.id),
        ex.len, maxb))
    end
  end
  self.pixels = ffi.new("float[?]", B * 3 * self.image_size * self.image_size)
  return self
end

-- the batches of an epoch: list of {indices...} (1-based into examples), deterministic in (seed, epoch)
function Loader:_plan_epoch(e)
  if self._planned == e then return self._batches end
  local n = #self.examples
  local order
  if self.shuffle then order = data.rng(self.seed, "study-order", e):permutation(n)
  else
    order = {}
    for i = 1, n do order[i] = i end
  end
  local pools, keys = {}, {}
  for _, i in ipairs(order) do
    local ex = self.examples[i]
    local key = self.bucket_of[i] .. ":" .. tostring(ex.image_pos)
    if not pools[key] then
      pools[key] = {}
      keys[#keys + 1] = key
    end
    local p = pools[key]
    p[#p + 1] = i
  end
  local batches = {}
  for _, key in ipairs(keys) do
    local p = pools[key]
    local full = math.floor(#p / self.B)
    for b = 0, full - 1 do
      local list = {}
      for r = 1, self.B do list[r] = p[b * self.B + r] end
      batches[#batches + 1] = list
    end
    if self.cover_all and #p % self.B ~= 0 then
      local list, pad = {}, {}
      for r = 1, self.B do
        local k = full * self.B + r
        list[r] = p[k] or p[full * self.B + 1]
        pad[r] = p[k] == nil
      end
      list.pad = pad
      batches[#batches + 1] = list
    end
  end
  if self.shuffle then data.rng(self.seed, "study-batches", e):shuffle(batches) end
  self._planned, self._batches = e, batches
  return batches
end

function Loader:per_epoch() return #self:_plan_epoch(self.epoch) end
function Loader:state() return {epoch = self.epoch, pos = self.pos, seed = self.seed, n = #self.examples} end
function Loader:restore(st)
  if st.n and st.n ~= #self.examples then
    pv.raise(string.format("loader: the saved state is for %d examples, this loader has %d", st.n, #self.examples))
  end
  self.epoch, self.pos = st.epoch or 0, st.pos or 0
  if st.seed then self.seed = st.seed end
  self._planned = nil
  return self
end
Loader.set_state = Loader.restore

local function append_row(ids, labels, enc, Lt, pad)
  for t = 1, Lt do
    ids[#ids + 1] = enc.ids[t] or pad
    labels[#labels + 1] = enc.labels[t] or chat.IGNORE
  end
end

-- builds the feeds of a list of example indices
function Loader:make_batch(list)
  local exs = {}
  for r, i in ipairs(list) do exs[r] = self.examples[i] end
  local Lt = self.bucket_of[list[1]]
  local pos = exs[1].image_pos
  local ids, tl = {}, {}
  local rows
  if self.mode == "sft" then
    for _, ex in ipairs(exs) do append_row(ids, tl, ex.enc, Lt, self.pad_id) end
    rows = #exs
  elseif self.mode == "pair_sft" then
    for _, ex in ipairs(exs) do append_row(ids, tl, ex.chosen_enc, Lt, self.pad_id) end
    rows = #exs
  else
    for _, ex in ipairs(exs) do append_row(ids, tl, ex.chosen_enc, Lt, self.pad_id) end
    for _, ex in ipairs(exs) do append_row(ids, tl, ex.rejected_enc, Lt, self.pad_id) end
    rows = 2 * #exs
  end
  local labels = mllm.splice_labels(tl, rows, Lt, self.n_img, pos)
  data.batch_images(self.ctx, exs, self.image_size, {out = self.pixels, B = self.B})
  local feeds = {pixel_values = self.pixels, input_ids = ids, labels = labels}
  if self.cache then
    feeds.ref_chosen_logps, feeds.ref_rejected_logps = self.cache:gather(list, self.cache_average)
  end
  return {bucket = {len = Lt, pos = pos}, feeds = feeds, indices = list, pad = list.pad, examples = exs}
end

function Loader:next()
  while true do
    if self.epoch >= self.epochs then return nil end
    local batches = self:_plan_epoch(self.epoch)
    if #batches == 0 then
      pv.raise(string.format("loader: %d examples make no batch of %d (each bucket needs a full batch)", #self.examples,
        self.B))
    end
    if self.pos < #batches then break end
    self.epoch, self.pos = self.epoch + 1, 0
  end
  local batches = self:_plan_epoch(self.epoch)
  self.pos = self.pos + 1
  local b = self:make_batch(batches[self.pos])
  b.epoch = self.epoch + (self.pos - 1) / #batches
  return b
end

---------------------------------------------------------------------------------------------------- graphs
local function batch_inputs(g, model, B, rows, bucket)
  local S = model.vision.cfg.image_size
  local px = g:input("pixel_values", {B, model.vision.cfg.num_channels, S, S})
  local ids = g:input("input_ids", {rows, bucket.len}, "i32")
  local labels = g:input("labels", {rows, model:seq_len(bucket.len, bucket.pos ~= nil)}, "i32")
  return px, ids, labels
end

-- study.sft_build(model, B) -> build(g, bucket) for the trainer: token-mean cross-entropy on the answers
function M.sft_build(model, B)
  return function(g, bucket)
    local px, ids, labels = batch_inputs(g, model, B, B, bucket)
    local out = model:forward(g, {pixel_values = px, input_ids = ids, image_pos = bucket.pos})
    local loss, count = obj.sft_loss(g, out.logits, labels)
    return {loss = loss, outputs = {num_tokens = count}, inputs = {pixel_values = px, input_ids = ids, labels = labels}}
  end
end

-- policy (and reference) sequence log-probs of the rows [chosen; rejected] -> chosen [B], rejected [B]
local function pair_logps(g, model, px, ids, labels, B, pos, average)
  local out = model:forward(g, {pixel_values = px, input_ids = ids, repeat_images = 2, image_pos = pos})
  local seq = obj.sequence_logps(g, out.logits, labels, {average = average})
  return seq:slice(0, 0, B), seq:slice(0, B, 2 * B), out
end
M.pair_logps_graph = pair_logps

-- study.dpo_build(model, B, opts) -> build(g, bucket): DPO on rows [chosen; rejected] sharing each image.
-- opts: ref (a frozen reference mllm in the same context) or cached = true (reference log-probs fed as inputs
-- ref_chosen_logps / ref_rejected_logps), beta, loss_type (sigmoid | ipo | hinge | bco_pair | mpo),
-- label_smoothing. ipo uses length-averaged log-probs (as TRL).
function M.dpo_build(model, B, opts)
  opts = opts or {}
  local lt = opts.loss_type or "sigmoid"
  local average = lt == "ipo"
  return function(g, bucket)
    local px, ids, labels = batch_inputs(g, model, B, 2 * B, bucket)
    local inputs = {pixel_values = px, input_ids = ids, labels = labels}
    local pc, pr, out = pair_logps(g, model, px, ids, labels, B, bucket.pos, average)
    local rc, rr
    if opts.ref then
      rc, rr = pair_logps(g, opts.ref, px, ids, labels, B, bucket.pos, average)
    elseif opts.cached then
      rc, rr = obj.reference_inputs(g, B)
      inputs.ref_chosen_logps, inputs.ref_rejected_logps = rc, rr
    else
      pv.raise("dpo_build: a reference model (opts.ref) or cached = true is required")
    end
    local sft
    if lt == "mpo" then sft = obj.sft_loss(g, out.logits:slice(0, 0, B), labels:slice(0, 0, B)) end
    local d = obj.dpo(g, {policy_chosen = pc, policy_rejected = pr, reference_chosen = rc, reference_rejected = rr,
      beta = opts.beta or M.DEFAULTS.beta, loss_type = lt, sft_loss = sft, label_smoothing = opts.label_smoothing})
    local outputs = {}
    for k, t in pairs(d.metrics) do if k ~= "loss" then outputs[k] = t end end
    if lt == "mpo" then for k, t in pairs(d.losses) do outputs["losses/" .. k] = t end end
    return {loss = d.loss, outputs = outputs, inputs = inputs}
  end
end

---------------------------------------------------------------------------------------------------- forward passes
-- Runs fn(model) with the whole model frozen (a forward-only graph binds no parameters as trainable).
local function frozen(model, fn)
  local was = model.frozen
  model.frozen = true
  local ok, a, b = pcall(fn)
  model.frozen = was
  if not ok then error(a, 0) end
  return a, b
end

-- study.pair_logps(ctx, model, pairs, opts) -> {chosen = double[n], rejected, chosen_avg, rejected_avg} (1-based
-- by example index): sequence log-probs of every pair under `model` (forward only). The batches are the loader's
-- (batch_size, buckets, seed), so the values match those a DPO graph computes for the same examples.
-- opts: batch_size, buckets, seed, backend, threads, image_size, n_image_tokens, pad_id.
function M.pair_logps(ctx, model, examples, opts)
  opts = opts or {}
  local B = opts.batch_size or M.DEFAULTS.post_batch_size
  local ld = M.loader(ctx, examples, {batch_size = B, mode = "dpo", seed = opts.seed, buckets = opts.buckets,
    max_buckets = opts.max_buckets, epochs = 1, cover_all = true,
    image_size = model.vision.cfg.image_size, n_image_tokens = model.num_image_tokens, pad_id = opts.pad_id})
  local n = #examples
  local r = {chosen = ffi.new("double[?]", n + 1), rejected = ffi.new("double[?]", n + 1),
    chosen_avg = ffi.new("double[?]", n + 1), rejected_avg = ffi.new("double[?]", n + 1), n = n}
  local plans = {}
  frozen(model, function()
    for b in function() return ld:next() end do
      local key = b.bucket.len .. ":" .. tostring(b.bucket.pos)
      local e = plans[key]
      if not e then
        local g = ctx:graph()
        e = {}
        e.px, e.ids, e.labels = batch_inputs(g, model, B, 2 * B, b.bucket)
        local out = model:forward(g, {pixel_values = e.px, input_ids = e.ids, repeat_images = 2,
          image_pos = b.bucket.pos})
        e.sum = obj.sequence_logps(g, out.logits, e.labels):mark_output()
        e.avg = obj.sequence_logps(g, out.logits, e.labels, {average = true}):mark_output()
        e.plan = g:compile{backend = opts.backend, threads = opts.threads}
        plans[key] = e
      end
      e.plan:write(e.px, b.feeds.pixel_values)
      e.plan:write(e.ids, b.feeds.input_ids)
      e.plan:write(e.labels, b.feeds.labels)
      e.plan:run()
      local s, a = e.plan:read_raw(e.sum), e.plan:read_raw(e.avg)
      for row, i in ipairs(b.indices) do
        if not (b.pad and b.pad[row]) then
          r.chosen[i], r.rejected[i] = s[row - 1], s[B + row - 1]
          r.chosen_avg[i], r.rejected_avg[i] = a[row - 1], a[B + row - 1]
        end
      end
    end
  end)
  for _, e in pairs(plans) do e.plan:free() end
  return r
end


---------------------------------------------------------------------------------------------------- checkpoints
-- study.save_checkpoint(ctx, model, dir, {tokenizer_path, extra = {...}}): dir/model.safetensors (every model var,
-- names without the model's prefix: vision.*, projector.*, llm.*), dir/config.json (the mllm config plus extra),
-- dir/tokenizer.json (a copy). Each file is written to a temporary name and renamed.
function M.save_checkpoint(ctx, model, dir, opts)
  opts = opts or {}
  data.mkdir(dir)
  local vars, names = {}, {}
  local strip = model.name ~= "" and (model.name .. ".") or ""
  for _, p in ipairs(model:parameters()) do
    vars[#vars + 1] = p.var
    names[#names + 1] = p.name:sub(1, #strip) == strip and p.name:sub(#strip + 1) or p.name
  end
  local tmp = dir .. "/model.safetensors.tmp-" .. ckpt.getpid()
  ctx:save_safetensors(tmp, vars, {names = names, metadata = {format = "pt", producer = "pivot.study"}})
  assert(os.rename(tmp, dir .. "/model.safetensors"))
  local cfg = {}
  for k, v in pairs(model.cfg) do cfg[k] = v end
  for k, v in pairs(opts.extra or {}) do cfg[k] = v end
  ckpt.write_atomic(dir .. "/config.json", json.encode(cfg, "  ") .. "\n")
  if opts.tokenizer_path and opts.tokenizer_path ~= dir .. "/tokenizer.json" then
    local f = assert(io.open(opts.tokenizer_path, "rb"))
    local text = f:read("*a")
    f:close()
    ckpt.write_atomic(dir .. "/tokenizer.json", text)
  end
  ckpt.fsync_path(dir)
  return dir
end

local function read_json(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return json.decode(text, path)
end

-- study.load_model(ctx, path, opts) -> model, cfg, tokenizer_path. path is
--  * a pivot checkpoint (study.save_checkpoint's folders; a trainer's checkpoint-N folder with opts.cfg):
--    config.json with `vision` and `llm` tables + model.safetensors (names vision.*, projector.*, llm.*);
--  * a folder with Hugging Face checkpoints in vision/ (SigLIP) and llm/ (Qwen2), and optionally
--    projector.safetensors (a fresh projector otherwise).
-- opts: prefix (e.g. "ref"), cfg (use this config instead of path/config.json), feature_layer.
function M.load_model(ctx, path, opts)
  opts = opts or {}
  local hf = require "pivot.hf"
  local cfg = read_json(path .. "/config.json")
  if opts.cfg and file_exists(path .. "/model.safetensors") then cfg = opts.cfg end
  if cfg and type(cfg.vision) == "table" and type(cfg.llm) == "table" then
    local model = M.model(ctx, cfg, {prefix = opts.prefix})
    model:load(path)
    local tp = file_exists(path .. "/tokenizer.json") and (path .. "/tokenizer.json") or nil
    return model, cfg, tp
  end
  if data.is_dir(path .. "/vision") and data.is_dir(path .. "/llm") then
    local vcfg, lcfg = hf.read_config(path .. "/vision"), hf.read_config(path .. "/llm")
    if type(vcfg.vision_config) == "table" then vcfg = vcfg.vision_config end
    local H = lcfg.hidden_size
    cfg = {model_type = "pivot_mllm", vision = vcfg, llm = lcfg, projector = {vcfg.hidden_size, H, H},
      vision_feature_layer = opts.feature_layer or -2}
    local proj = path .. "/projector.safetensors"
    -- built without drawing the random values the load overwrites (a fresh projector still gets its init)
    local model = ctx:defer_init(function()
      local m = M.model(ctx, cfg, {prefix = opts.prefix})
      m:load_hf{vision = path .. "/vision", llm = path .. "/llm", projector = file_exists(proj) and proj or nil}
      return m
    end)
    local tp = path .. "/llm/tokenizer.json"
    if not file_exists(tp) then tp = file_exists(path .. "/tokenizer.json") and (path .. "/tokenizer.json") or nil end
    return model, cfg, tp
  end
  pv.raise("load_model: '" .. path .. "' has neither a config.json with vision/llm nor vision/ and llm/ folders")
end

-- study.load_vision(ctx, model, path) -> {path, kind, loaded}: replaces model.vision's weights by a donor tower's
-- (the PIVOT transfer). path is a pivot checkpoint (config.json with vision/llm tables + model.safetensors: the
-- vision.* tensors; e.g. runs/dpo/final), a folder with a Hugging Face vision/ subfolder (study.load_model's layout),
-- or a Hugging Face SiglipVisionModel / SiglipModel folder or .safetensors file (hf.save_vision_tower's output).
-- The donor's vision config must match the model's (image_size, patch_size, hidden_size, layers, ...); a mismatch
-- raises naming both values, and nothing is loaded.
function M.load_vision(ctx, model, path)
  local hf = require "pivot.hf"
  local tower = model.vision
  local mine = tower.cfg or {}
  local cfg, src, kind = nil, path, nil
  local pc = read_json(path .. "/config.json")
  if pc and type(pc.vision) == "table" and type(pc.llm) == "table" then
    cfg, kind = pc.vision, "pivot"
  elseif data.is_dir(path .. "/vision") then
    src, kind = path .. "/vision", "hf"
    cfg = hf.read_config(src)
  elseif data.is_dir(path) then
    kind = "hf"
    cfg = hf.read_config(path)
  elseif file_exists(path) then
    kind = "hf"
    cfg = read_json(data.dirname(path) .. "/config.json")
  else
    pv.raise("vision-from: '" .. path .. "' is neither a checkpoint folder nor a .safetensors file")
  end
  if type(cfg) == "table" and type(cfg.vision_config) == "table" then cfg = cfg.vision_config end
  if type(cfg) == "table" then
    for _, k in ipairs {"image_size", "patch_size", "hidden_size", "intermediate_size", "num_attention_heads",
      "num_channels"} do
      local a, b = tonumber(cfg[k]), tonumber(mine[k])
      if a and b and a ~= b then
        pv.raise(string.format("vision-from: %s has vision %s = %d, the model %d (the towers must have the same " ..
          "shape)", path, k, a, b))
      end
    end
    -- layers: the donor needs every layer the model uses (an export may hold only those: hf.save_vision_tower)
    local a, b = tonumber(cfg.num_hidden_layers), tonumber(mine.num_hidden_layers)
    local need = tower.num_layers or b
    if a and b and (a < need or a > b) then
      pv.raise(string.format("vision-from: %s has vision num_hidden_layers = %d, the model %d (uses %d)", path, a, b,
        need))
    end
  end
  local ck = hf.open(ctx, src)
  local res
  if kind == "pivot" then
    local ignore = {}
    for _, p in ipairs(tower.dropped or {}) do ignore[#ignore + 1] = "^vision%." .. p end
    local pre = tower.prefix and tower.prefix ~= "" and (tower.prefix .. ".") or ""
    res = hf.load_params(ck, tower:parameters(), {ignore = ignore, map = function(n)
      local rest = n:match("^vision%.(.*)$")
      if not rest then return false end
      return pre .. rest
    end})
  else
    res = hf.load_vision_tower(ck, tower)
  end
  ck:close()
  return {path = path, kind = kind, loaded = res.loaded}
end

-- A frozen copy of model's current weights under prefix (default "ref"): the DPO reference.
function M.frozen_copy(ctx, model, prefix)
  local ref = M.model(ctx, model.cfg, {prefix = prefix or "ref"})
  local mine = model:parameters()
  for i, p in ipairs(ref:parameters()) do
    local src = mine[i].var
    if src.numel ~= p.var.numel then pv.raise("frozen_copy: parameter lists differ at " .. p.name) end
    p.var:write((src:read_raw()))
  end
  return ref:freeze()
end

---------------------------------------------------------------------------------------------------- training
local function mean(list, a, b)
  local s, n = 0, 0
  for i = math.max(1, a), math.min(#list, b) do s, n = s + list[i], n + 1 end
  return n > 0 and s / n or nil
end

local function fmt_metrics(m, keys)
  local parts = {}
  for _, k in ipairs(keys) do
    if type(m[k]) == "number" then parts[#parts + 1] = string.format("%s %.4g", k, m[k]) end
  end
  return table.concat(parts, "  ")
end

-- Runs a trainer over a loader; prints a line every print_every steps (0: never). -> summary {label, steps,
-- seconds, steps_per_second, loss_first, loss_last, loss_first5, loss_last5, last (metrics of the last step),
-- losses (per step), metrics_path, out_dir, resumed_from}
function M.fit(ctx, model, build, loader, o)
  local steps = o.steps or pv.raise("fit: steps is required")
  local tr = train.new{ctx = ctx, model = model, build = build, lr = o.lr, schedule = o.schedule or M.DEFAULTS.schedule,
    warmup_ratio = o.warmup_ratio or M.DEFAULTS.warmup_ratio, steps = steps, accum = 1,
    max_grad_norm = o.max_grad_norm or M.DEFAULTS.max_grad_norm, lr_mult = o.lr_mult, weight_decay = o.weight_decay,
    out_dir = o.out_dir, save_every = o.save_every or (o.out_dir and math.max(1, math.floor(steps / 4)) or 0),
    save_total_limit = 1, resume = o.resume, backend = o.backend, threads = o.threads, seed = o.seed,
    quiet = true, progress = false}
  -- optimizer state vars are found again by name: a new stage starts from zero moments unless it resumed
  if not tr.resumed_from then for _, v in ipairs(tr.opt:state_vars()) do v:fill(0) end end
  local label = o.label or "train"
  local every = o.print_every
  if every == nil then every = math.max(1, math.floor(steps / 5)) end
  local keys = o.print_keys or {"loss", "grad_norm", "learning_rate"}
  local losses, last = {}, nil
  local t0 = log.now()
  local start = tr.step_count
  tr:fit(loader, {on_step = function(m)
    losses[#losses + 1] = m.loss
    last = m
    if every > 0 and (m.step % every == 0 or m.step == steps or m.step == start + 1) then
      print(string.format("[%s] step %d/%d  %s  (%.1f s)", label, m.step, steps, fmt_metrics(m, keys), log.now() - t0))
    end
  end})
  local dt = log.now() - t0
  tr:close()
  local n = #losses
  return {label = label, steps = tr.step_count, steps_run = n, seconds = dt, steps_per_second = n > 0 and n / dt or 0,
    loss_first = losses[1], loss_last = losses[n], loss_first5 = mean(losses, 1, 5), loss_last5 = mean(losses, n - 4, n),
    last = last, losses = losses, out_dir = o.out_dir, resumed_from = tr.resumed_from,
    metrics_path = o.out_dir and (o.out_dir .. "/metrics.jsonl") or nil}
end

local function common(o, steps, lr)
  return {steps = steps, lr = lr, seed = o.seed, backend = o.backend, threads = o.threads, resume = o.resume,
    save_every = o.save_every, print_every = o.print_every, schedule = o.schedule, warmup_ratio = o.warmup_ratio,
    max_grad_norm = o.max_grad_norm}
end

local function loader_for(ctx, model, examples, mode, B, o)
  return M.loader(ctx, examples, {batch_size = B, mode = mode, seed = o.seed or 1, buckets = o.buckets,
    max_buckets = o.max_buckets, image_size = model.vision.cfg.image_size, n_image_tokens = model.num_image_tokens,
    pad_id = o.pad_id or (o.tok and o.tok:token_to_id("<|endoftext|>")) or 0, cache = o.cache,
    cache_average = o.cache_average})
end

-- study.stage1(ctx, model, world, tok, opts) -> {stage1a, stage1b (fit summaries), dir, seconds}
-- 1a trains the projector only on captions; 1b trains everything on captions + questions, the vision tower at
-- vision_lr_mult x the lr. Saves a checkpoint (study.save_checkpoint) into opts.out_dir, with each sub-stage's
-- metrics.jsonl in out_dir/stage1a and out_dir/stage1b and the two combined in out_dir/metrics.jsonl.
-- opts: out_dir, seed, batch_size, steps_1a, steps_1b, lr_1a, lr_1b, vision_lr_mult, images (world images),
-- stage0_steps (default 0: a contrastive pretraining of the vision tower first, pivot.pretrain),
-- examples_1a / examples_1b (real data instead of the world: encoded SFT examples), image_mode, system,
-- tokenizer_path, backend, threads, resume, print_every, extra (fields for config.json).
function M.stage1(ctx, model, world, tok, opts)
  opts = opts or {}
  local D = M.DEFAULTS
  local env = {tok = tok, image_mode = opts.image_mode or D.image_mode, system = opts.system}
  local ex1a, ex1b = opts.examples_1a, opts.examples_1b
  if not ex1b then
    local wo = {seed = opts.seed or 1, first = M.SPLITS.stage1, count = opts.images or D.stage1_images}
    ex1a = M.encode_examples(env, M.world_examples(world, "caption", wo), opts)
    ex1b = M.encode_examples(env, M.world_examples(world, "stage1", wo), opts)
  end
  ex1a = ex1a or ex1b
  local B = opts.batch_size or D.batch_size
  local t0 = log.now()
  local out = opts.out_dir
  local o = {tok = tok, seed = opts.seed, max_buckets = opts.max_buckets, buckets = opts.buckets}
  local s0
  if (opts.stage0_steps or 0) > 0 then
    -- stage 0 (optional): SigLIP-style contrastive pretraining of the vision tower on the world's captions
    -- (pivot.pretrain), standing in for the paper's pretrained SigLIP2 encoder
    if not world then pv.raise("stage1: stage0_steps needs the world (captions)") end
    local t = log.now()
    s0 = require("pivot.pretrain").run(ctx, model.vision, world, {steps = opts.stage0_steps, tok = tok,
      seed = opts.seed or 1, out_dir = out and (out .. "/stage0"), threads = opts.threads, backend = opts.backend,
      start_index = M.SPLITS.stage0})
    s0.seconds = log.now() - t
    if (opts.print_every or 1) > 0 then
      print(string.format("[stage0] %d steps, loss %.4f, %.1f s", opts.stage0_steps, s0.loss, s0.seconds))
    end
  end
  -- 1a: the projector alone
  local vf, lf = model.vision.frozen, model.llm.frozen
  model.vision:freeze()
  model.llm:freeze()
  local c = common(opts, opts.steps_1a or D.steps_1a, opts.lr_1a or D.lr_1a)
  c.out_dir, c.label = out and (out .. "/stage1a"), "stage1a"
  local ok, s1a = pcall(M.fit, ctx, model, M.sft_build(model, B), loader_for(ctx, model, ex1a, "sft", B, o), c)
  model.vision.frozen, model.llm.frozen = vf, lf
  if not ok then error(s1a, 0) end
  -- 1b: everything, the vision tower at a lower lr
  c = common(opts, opts.steps_1b or D.steps_1b, opts.lr_1b or D.lr_1b)
  c.out_dir, c.label = out and (out .. "/stage1b"), "stage1b"
  c.lr_mult = {[model.vision.name] = opts.vision_lr_mult or D.vision_lr_mult}
  local s1b = M.fit(ctx, model, M.sft_build(model, B), loader_for(ctx, model, ex1b, "sft", B, o), c)
  local r = {stage0 = s0, stage1a = s1a, stage1b = s1b, seconds = log.now() - t0, examples_1a = #ex1a,
    examples_1b = #ex1b}
  if out then
    local extra = {image_mode = env.image_mode, system = opts.system, world = world and world.cfg or nil}
    for k, v in pairs(opts.extra or {}) do extra[k] = v end
    r.dir = M.save_checkpoint(ctx, model, out, {tokenizer_path = opts.tokenizer_path, extra = extra})
    local lines = {}
    for _, st in ipairs {"stage1a", "stage1b"} do
      local f = io.open(out .. "/" .. st .. "/metrics.jsonl", "rb")
      if f then
        for line in f:lines() do
          local okj, m = pcall(json.decode, line)
          if okj and type(m) == "table" then
            m.stage = st
            lines[#lines + 1] = json.encode(m)
          end
        end
        f:close()
      end
    end
    ckpt.write_atomic(out .. "/metrics.jsonl", table.concat(lines, "\n") .. "\n")
  end
  return r
end

-- study.sft(ctx, model, pairs, opts) -> fit summary. Trains on the chosen answers of the pairs (or on SFT examples
-- with answers), batched exactly as study.dpo batches the same pairs (same seed -> same pairs at every step).
-- opts: out_dir, steps, batch_size (pairs per step), lr, seed, backend, threads, resume, save_every, print_every,
-- tok or pad_id, buckets, max_buckets.
function M.sft(ctx, model, examples, opts)
  opts = opts or {}
  local D = M.DEFAULTS
  local B = opts.batch_size or D.post_batch_size
  local mode = examples[1] and examples[1].chosen and "pair_sft" or "sft"
  local c = common(opts, opts.steps or D.post_steps, opts.lr or D.sft_lr)
  c.out_dir, c.label = opts.out_dir, opts.label or "sft"
  return M.fit(ctx, model, M.sft_build(model, B), loader_for(ctx, model, examples, mode, B, opts), c)
end

-- study.dpo(ctx, model, pairs, opts) -> fit summary (+ ref_cache info). The reference is the starting point of
-- `model`: opts.ref (a frozen mllm), or opts.init (a checkpoint folder, loaded as a second mllm with the prefix
-- "ref" and frozen), else a frozen copy of model's current weights under the prefix "ref"; or with
-- opts.ref_cache the reference log-probs computed once by `model` itself before training (pivot.refcache; stored
-- in out_dir/ref_logps.safetensors, or at opts.ref_cache when it is a path) and fed per batch.
-- opts: as study.sft plus beta, loss_type (sigmoid | ipo | hinge | bco_pair | mpo), label_smoothing, ref, init,
-- ref_cache.
function M.dpo(ctx, model, examples, opts)
  opts = opts or {}
  local D = M.DEFAULTS
  local B = opts.batch_size or D.post_batch_size
  local lt = opts.loss_type or D.loss_type
  for i, ex in ipairs(examples) do
    if not (ex.chosen_enc and ex.rejected_enc) then
      pv.raise(string.format("dpo: example %s is not an encoded preference pair (study.encode_examples of pairs)",
        tostring(ex.id or i)))
    end
  end
  local c = common(opts, opts.steps or D.post_steps, opts.lr or D.dpo_lr)
  c.out_dir, c.label = opts.out_dir, opts.label or "dpo"
  c.print_keys = {"loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"}
  local lo = {}
  for k, v in pairs(opts) do lo[k] = v end
  local build, info
  if opts.ref_cache then
    local refcache = require "pivot.refcache"
    local path = type(opts.ref_cache) == "string" and opts.ref_cache
      or (opts.out_dir and (opts.out_dir .. "/ref_logps.safetensors")) or nil
    local cache
    cache, info = refcache.get(ctx, model, examples, {path = path, batch_size = B, seed = opts.seed or 1,
      buckets = opts.buckets, max_buckets = opts.max_buckets, backend = opts.backend, threads = opts.threads,
      pad_id = opts.pad_id})
    lo.cache, lo.cache_average = cache, lt == "ipo"
    build = M.dpo_build(model, B, {cached = true, beta = opts.beta, loss_type = lt, label_smoothing = opts.label_smoothing})
  else
    local ref = opts.ref
    if not ref and opts.init then ref = M.load_model(ctx, opts.init, {prefix = "ref", cfg = model.cfg}):freeze() end
    ref = ref or M.frozen_copy(ctx, model, "ref")
    build = M.dpo_build(model, B, {ref = ref, beta = opts.beta, loss_type = lt, label_smoothing = opts.label_smoothing})
  end
  local r = M.fit(ctx, model, build, loader_for(ctx, model, examples, "dpo", B, lo), c)
  r.ref_cache = info
  return r
end

---------------------------------------------------------------------------------------------------- evaluation
-- study.pair_accuracy(ctx, model, pairs, opts) -> {accuracy, n, by_type = {type = {accuracy, n}}}: how often the
-- model's summed log-prob of the chosen answer beats the rejected one (forward only; a held-out split measures
-- what post-training changed).
function M.pair_accuracy(ctx, model, examples, opts)
  local lp = M.pair_logps(ctx, model, examples, opts)
  local r = {n = #examples, by_type = {}}
  local hits = 0
  for i, ex in ipairs(examples) do
    local ok = lp.chosen[i] > lp.rejected[i] and 1 or 0
    hits = hits + ok
    local t = r.by_type[ex.type or "?"] or {hits = 0, n = 0}
    t.hits, t.n = t.hits + ok, t.n + 1
    r.by_type[ex.type or "?"] = t
  end
  r.accuracy = #examples > 0 and hits / #examples or 0
  for _, t in pairs(r.by_type) do t.accuracy = t.hits / t.n end
  return r
end


---------------------------------------------------------------------------------------------------- recipes
-- The command-line side of recipes/stage1.lua, sft.lua and dpo.lua (options as `pivot run` passes them).
local function num(x) return x ~= nil and tonumber(x) or nil end

-- study.run_stage1(opts, out) -> stage1 result (r.dir = out). World data by default; real data with
-- data (SFT- or DPO-format JSONL; DPO lines give their chosen answers) + image_root + tokenizer or model.
-- opts: seed, threads, backend, resume, preset, llm, image_size, images, steps_1a, steps_1b (or steps),
-- batch_size, lr_1a, lr_1b, vision_lr_mult, model (initial weights: pivot or HF checkpoint), data_1a, limit,
-- vision_from (the PIVOT transfer: the vision tower's weights from this checkpoint, study.load_vision, while the
-- LLM and projector come from model (or are fresh)), freeze_vision (default true with vision_from: the tower stays
-- frozen in 1a and 1b, so only the projector and then projector + LLM train; "false" trains it in 1b as usual).
function M.run_stage1(opts, out)
  local seed = num(opts.seed) or 1
  local ctx = pv.context{threads = num(opts.threads), seed = seed}
  local env, model, cfg0, tokpath
  if opts.model then model, cfg0, tokpath = M.load_model(ctx, opts.model) end
  if opts.data then
    tokpath = opts.tokenizer or tokpath
    if not tokpath then pv.raise("stage1: --data needs --tokenizer FILE or a --model folder with a tokenizer.json") end
    env = M.text_env(ctx, tokpath, {image_mode = opts.image_mode})
  else
    env = M.world(ctx, {out_dir = out, image_mode = opts.image_mode,
      world = opts.image_size and {image_size = num(opts.image_size)} or nil})
  end
  model = model or M.model(ctx, M.mini_config{vocab_size = env.vocab_size, preset = opts.preset, llm = opts.llm,
    image_size = num(opts.image_size)})
  local freeze = opts.freeze_vision
  if freeze == nil then freeze = opts.vision_from ~= nil end
  if freeze == "false" or freeze == "0" or freeze == 0 or freeze == "no" then freeze = false end
  freeze = freeze and true or false
  local extra
  if opts.vision_from then
    local r = M.load_vision(ctx, model, tostring(opts.vision_from))
    print(string.format("stage1: vision tower from %s (%s, %d tensors)%s", r.path, r.kind, r.loaded,
      freeze and ", frozen" or ""))
    extra = {vision_from = r.path}
  end
  if freeze then
    if (num(opts.stage0_steps) or 0) > 0 then
      pv.raise("stage1: --stage0-steps trains the vision tower, which --freeze-vision (or --vision-from) keeps frozen")
    end
    model.vision:freeze()
    extra = extra or {}
    extra.freeze_vision = true
  end
  local so = {out_dir = out, seed = seed, batch_size = num(opts.batch_size), steps_1a = num(opts.steps_1a),
    steps_1b = num(opts.steps_1b) or num(opts.steps), lr_1a = num(opts.lr_1a), lr_1b = num(opts.lr_1b),
    vision_lr_mult = num(opts.vision_lr_mult), images = num(opts.images), image_mode = env.image_mode,
    stage0_steps = num(opts.stage0_steps),
    tokenizer_path = env.tokenizer_path, backend = opts.backend, threads = num(opts.threads), resume = opts.resume,
    print_every = num(opts.print_every), extra = extra}
  if opts.data then
    local eo = {image_root = opts.image_root, kind = "sft", limit = num(opts.limit)}
    so.examples_1b = M.encode_examples(env, M.jsonl_examples(opts.data, eo))
    so.examples_1a = opts.data_1a and M.encode_examples(env, M.jsonl_examples(opts.data_1a, eo)) or so.examples_1b
  end
  return M.stage1(ctx, model, env.world, env.tok, so)
end

-- study.setup(opts, out) -> run {ctx, model, env, examples, init, seed, heldout}: what the sft/dpo recipes train.
-- The starting point is opts.init (a stage-1 checkpoint) or opts.model (a pivot or HF checkpoint folder); with
-- neither, a short stage 1 (stage1_steps 1b steps, default 60) is trained into out/stage1 first (reused with
-- --resume). Data: opts.data (JSONL; image_root) or the world's post-training split (opts.images images).
-- opts.eval = N: N held-out world images whose pairs measure the pair accuracy before and after.
function M.setup(opts, out)
  local log0 = log.now()
  local seed = num(opts.seed) or 1
  local init = opts.init or opts.model
  local stage1
  if not init then
    init = out .. "/stage1"
    if not (opts.resume and file_exists(init .. "/model.safetensors") and file_exists(init .. "/config.json")) then
      local s = num(opts.stage1_steps) or 60
      local so = {}
      for k, v in pairs(opts) do so[k] = v end
      so.steps, so.steps_1b, so.steps_1a = nil, s, num(opts.stage1_steps_1a) or math.max(1, math.floor(s / 4))
      so.images, so.resume, so.data, so.model = num(opts.stage1_images) or 500, nil, nil, nil
      stage1 = M.run_stage1(so, init)
    end
  end
  local ctx = pv.context{threads = num(opts.threads), seed = seed}
  local model, cfg, tokpath = M.load_model(ctx, init)
  tokpath = opts.tokenizer or tokpath
  if not tokpath then pv.raise("setup: no tokenizer.json in " .. init .. "; pass --tokenizer FILE") end
  local eo = {image_mode = cfg.image_mode, system = cfg.system}
  local env, examples
  if opts.data then
    env = M.text_env(ctx, tokpath, eo)
    examples = M.encode_examples(env, M.jsonl_examples(opts.data, {image_root = opts.image_root, limit = num(opts.limit)}))
  else
    eo.tokenizer_path, eo.world = tokpath, cfg.world
    env = M.world(ctx, eo)
    examples = M.world_pairs(env, {seed = seed, count = num(opts.images)})
  end
  if #examples == 0 then pv.raise("setup: no training examples") end
  local run = {ctx = ctx, model = model, cfg = cfg, env = env, examples = examples, init = init, seed = seed,
    stage1 = stage1, setup_seconds = log.now() - log0, backend = opts.backend, threads = num(opts.threads)}
  if num(opts.eval) and env.world then
    run.heldout = M.world_pairs(env, {seed = seed, first = M.SPLITS.eval, count = num(opts.eval)})
    run.acc_before = M.pair_accuracy(ctx, model, run.heldout, {backend = run.backend, threads = run.threads})
  end
  return run
end

-- study.finish(run, r, out, label) -> the summary line (printed): saves out/final (a checkpoint like stage 1's),
-- measures the held-out pair accuracy when run.heldout, and appends {summary = ...} to out/summary.json.
function M.finish(run, r, out, label, extra)
  M.save_checkpoint(run.ctx, run.model, out .. "/final", {tokenizer_path = run.env.tokenizer_path, extra = {
    image_mode = run.cfg.image_mode, system = run.cfg.system, world = run.cfg.world, trained_by = label}})
  local parts = {string.format("%s: %d steps in %.1f s (%.2f steps/s)", label, r.steps, r.seconds, r.steps_per_second)}
  if r.loss_first5 then parts[#parts + 1] = string.format("loss %.4f -> %.4f (first/last 5 steps)", r.loss_first5,
    r.loss_last5) end
  if extra then parts[#parts + 1] = extra end
  local sum = {label = label, steps = r.steps, seconds = r.seconds, steps_per_second = r.steps_per_second,
    loss_first5 = r.loss_first5, loss_last5 = r.loss_last5, last = r.last, init = run.init}
  if run.heldout then
    local after = M.pair_accuracy(run.ctx, run.model, run.heldout, {backend = run.backend, threads = run.threads})
    sum.heldout_pair_accuracy = {before = run.acc_before.accuracy, after = after.accuracy, n = after.n}
    parts[#parts + 1] = string.format("held-out pair accuracy %.3f -> %.3f (%d pairs)", run.acc_before.accuracy,
      after.accuracy, after.n)
  end
  parts[#parts + 1] = "out " .. out
  ckpt.write_atomic(out .. "/summary.json", json.encode(sum, "  ") .. "\n")
  local line = table.concat(parts, "; ")
  print(line)
  return line, sum
end


-- study.pipeline(opts) -> {stage1 = stage1 result, sft = summary, dpo = summary, seconds}: the whole study arm set
-- for one seed: stage 1 into out/stage1, then SFT (out/sft) and DPO (out/dpo) from that checkpoint, each in its own
-- context, on the same pairs with the same batches and steps. opts: out (required), seed, threads, backend, preset,
-- llm, stage1_images, steps_1a, steps_1b, post_images, post_steps, batch_size (stage 1), post_batch_size, sft_lr,
-- dpo_lr, loss, beta, ref_cache, eval (held-out images for the pair accuracy).
function M.pipeline(opts)
  local out = opts.out or pv.raise("pipeline: opts.out is required")
  local t0 = log.now()
  local so = {}
  for k, v in pairs(opts) do so[k] = v end
  so.images, so.steps = opts.stage1_images, nil
  local s1 = M.run_stage1(so, out .. "/stage1")
  local r = {stage1 = s1}
  for _, arm in ipairs {"sft", "dpo"} do
    local o = {init = s1.dir, seed = opts.seed, threads = opts.threads, backend = opts.backend,
      images = opts.post_images, eval = opts.eval, resume = opts.resume}
    local run = M.setup(o, out .. "/" .. arm)
    local to = {out_dir = out .. "/" .. arm, steps = num(opts.post_steps), batch_size = num(opts.post_batch_size),
      seed = run.seed, backend = opts.backend, threads = num(opts.threads), resume = opts.resume, tok = run.env.tok,
      print_every = num(opts.print_every)}
    if arm == "sft" then to.lr = num(opts.sft_lr)
    else
      to.lr, to.loss_type, to.beta, to.ref_cache = num(opts.dpo_lr), opts.loss, num(opts.beta), opts.ref_cache
      to.init = s1.dir
    end
    local res = M[arm](run.ctx, run.model, run.examples, to)
    local _, sum = M.finish(run, res, out .. "/" .. arm, arm)
    res.summary = sum
    r[arm] = res
  end
  r.seconds = log.now() - t0
  return r
end

return M
