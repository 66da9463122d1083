-- pivot.models.mllm: the LLaVA-style MLLM of the paper: SigLIP tower -> 2-layer MLP projector -> Qwen2.
--
--   local mllm = require "pivot.models.mllm"
--   local m = mllm.new(ctx, {vision = vcfg, llm = lcfg, projector = {Dv, H, H}, vision_feature_layer = -2})
--   local ref = mllm.new(ctx, cfg, {prefix = "ref"}):freeze()      -- a frozen reference copy ("ref.vision.*", ...)
--   m:load(ck)                                                     -- a checkpoint with vision.*/projector.*/llm.*
--   local out = m:forward(g, {pixel_values = px, input_ids = ids}) -- prefix mode: the image tokens come first
--   out.logits [B, N + Lt, V], out.image_embeds [B, N, H], out.vision_features [B, N, Dv]
--
-- cfg (the shape of the fixtures' setup.json): vision = the vision config.json table, llm = the Qwen2 config.json
-- table, projector = {din, dhidden, dout} (default {vision hidden, llm hidden, llm hidden}), vision_feature_layer
-- (default -2: the output of the second-to-last encoder layer, no post_layernorm, no head).
-- opts: prefix (prepended to every var name, e.g. "ref"), keep_all (create every tower layer, post_layernorm and
-- the head even though they are unused, so a full checkpoint loads strictly and their zero gradients exist).
--
-- Var names: <prefix.>vision.<SigLIP name>, <prefix.>projector.{0,2}.{weight,bias}, <prefix.>llm.<Qwen2 name>.
--
-- Splicing the image embeddings into the text:
--  * prefix mode (default; the fixtures): input_ids [B, Lt] hold only text; the sequence is
--    [N image embeddings][Lt text embeddings], L = N + Lt.
--  * placeholder mode (LLaVA): a = {image_pos = p} or {image_pos = {p1, ..., pB}} gives, per row, the 0-based
--    position of the one placeholder id in input_ids (host-side numbers, static per plan bucket). The placeholder
--    is replaced by the N image embeddings: L = Lt - 1 + N. The placeholder id must be a valid vocabulary id
--    (e.g. <|image_pad|>, or pad), since the whole row is embedded before splicing.
-- Labels: -100 on image and prompt positions (mllm.splice_labels / m:labels build them on the host); sequences are
-- right-padded. Freezing: m.vision:freeze(), m.projector:freeze(), m.llm:freeze(), or m:freeze() for all.
local pv = require "pivot"
local nn = require "pivot.nn"
local qwen2 = require "pivot.models.qwen2"
local projector = require "pivot.models.projector"

local M = {}
M.IGNORE = -100

local MLLM = setmetatable({}, {__index = nn.Module})
MLLM.__index = MLLM
M.MLLM = MLLM

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

function M.new(ctx, cfg, opts)
  opts = opts or {}
  if type(cfg) ~= "table" or type(cfg.vision) ~= "table" or type(cfg.llm) ~= "table" then
    pv.raise("mllm.new: cfg must be a table with 'vision' and 'llm' config tables (as setup.json)")
  end
  local prefix = opts.prefix or cfg.prefix or ""
  return pv.scope(prefix ~= "" and prefix or "mllm", function()
    local siglip = require "pivot.models.siglip"
    local self = nn.module(ctx, prefix, MLLM)
    self.cfg = cfg
    local fl = opts.vision_feature_layer or cfg.vision_feature_layer or -2
    self.vision = self:add("vision", siglip.new(ctx, self:path("vision"), cfg.vision, {feature_layer = fl,
      keep_all = opts.keep_all, with_post_layernorm = false, with_head = false}))
    local dv = self.vision.cfg.hidden_size
    self.llm = self:add("llm", qwen2.new(ctx, self:path("llm"), cfg.llm))
    local H = self.llm.dims.hidden
    local pd = cfg.projector or {dv, H, H}
    if pd[1] ~= dv or pd[3] ~= H then
      pv.raise(string.format("projector %s does not fit vision hidden %d -> llm hidden %d", shape_str(pd), dv, H))
    end
    self.projector = self:add("projector", projector.new(ctx, self:path("projector"), pd[1], pd[2], pd[3]))
    self.num_image_tokens = self.vision.num_patches
    self.hidden = H
    self.vocab = self.llm.dims.vocab
    return self
  end)
end

-- Images -> {vision_features [B, N, Dv], image_embeds [B, N, H], vision = the tower's outputs}
function MLLM:encode_images(g, pixel_values)
  return pv.scope(self.name ~= "" and self.name or "mllm", function()
    local vout = self.vision:forward(g, pixel_values)
    local feats = vout.features
    local emb = self.projector:forward(g, feats)
    return {vision_features = feats, image_embeds = emb, vision = vout}
  end)
end

local function positions(a, rows)
  local p = a.image_pos
  if p == nil then return nil end
  if type(p) == "number" then
    local r = {}
    for i = 1, rows do r[i] = p end
    return r
  end
  if type(p) ~= "table" or #p ~= rows then
    pv.raise(string.format("image_pos must be a number or a list of %d numbers", rows))
  end
  return p
end

-- Splices image embeddings img [R, N, H] into text embeddings txt [R, Lt, H] -> [R, L, H]
function M.splice(txt, img, pos)
  local R, Lt = txt.shape[1], txt.shape[2]
  if pos == nil then return img:concat(txt, 1) end
  local same = true
  for i = 2, R do same = same and pos[i] == pos[1] end
  local function pieces(t, im, p)
    if p < 0 or p >= Lt or p ~= math.floor(p) then
      pv.raise(string.format("image_pos %s is outside the text [0, %d)", tostring(p), Lt))
    end
    local list = {}
    if p > 0 then list[#list + 1] = t:slice(1, 0, p) end
    list[#list + 1] = im
    if p + 1 < Lt then list[#list + 1] = t:slice(1, p + 1, Lt) end
    return #list == 1 and list[1] or pv.concat(list, 1)
  end
  if same then return pieces(txt, img, pos[1]) end
  local rows = {}
  for r = 1, R do rows[r] = pieces(txt:slice(0, r - 1, r), img:slice(0, r - 1, r), pos[r]) end
  return pv.concat(rows, 0)
end

-- m:forward(g, a) with a = {
--   pixel_values = [B, C, S, S]  or  image_embeds = [B, N, H] (already projected, e.g. shared between calls),
--   input_ids = [R, Lt] text ids (R = B * repeat_images),
--   repeat_images = k (default 1): the rows of input_ids are k groups of B (e.g. [chosen; rejected] for DPO), row
--     j*B + b uses image b,
--   image_pos = nil (prefix mode) | number | list of R numbers (placeholder mode),
--   position_ids = [R, L] or [L] (default 0..L-1), mask = additive attention mask (see qwen2), no_logits = bool }
-- -> {logits [R, L, V], image_embeds [B, N, H], vision_features [B, N, Dv] (nil when image_embeds was given),
--     inputs_embeds [R, L, H], hidden_states, vision}
function MLLM:forward(g, a)
  return pv.scope(self.name ~= "" and self.name or "mllm", function()
    local enc
    if a.image_embeds then enc = {image_embeds = a.image_embeds}
    elseif a.pixel_values then enc = self:encode_images(g, a.pixel_values)
    else pv.raise("forward: pixel_values or image_embeds is required") end
    local ids = a.input_ids
    if not ids or ids.ndim ~= 2 then pv.raise("forward: input_ids [R, Lt] is required") end
    local img = enc.image_embeds
    local B, R = img.shape[1], ids.shape[1]
    local k = a.repeat_images or 1
    if B * k ~= R then
      pv.raise(string.format("forward: %d images x repeat_images %d do not match %d rows of input_ids %s", B, k, R,
        shape_str(ids.shape)))
    end
    if k > 1 then
      local list = {}
      for i = 1, k do list[i] = img end
      img = pv.concat(list, 0)
    end
    local txt = self.llm:embed(g, ids)
    local x = M.splice(txt, img, positions(a, R))
    local out = self.llm:forward(g, {inputs_embeds = x, position_ids = a.position_ids, mask = a.mask,
      no_logits = a.no_logits})
    out.image_embeds = enc.image_embeds
    out.vision_features = enc.vision_features
    out.vision = enc.vision
    out.inputs_embeds = x
    return out
  end)
end

-- Labels of the spliced sequence, built on the host from text labels (flat Lua table of R * Lt values, or a list
-- of R lists): -100 on the image positions (and on the placeholder). image_pos as in forward (nil: prefix mode).
-- Returns a flat table of R * L values and L.
function M.splice_labels(text_labels, R, Lt, n_img, image_pos)
  local flat = text_labels
  if type(text_labels[1]) == "table" then
    flat = {}
    for r = 1, #text_labels do for t = 1, #text_labels[r] do flat[#flat + 1] = text_labels[r][t] end end
  end
  if #flat ~= R * Lt then
    pv.raise(string.format("splice_labels: %d labels for %d rows x %d positions", #flat, R, Lt))
  end
  local pos = image_pos
  if type(pos) == "number" then
    pos = {}
    for i = 1, R do pos[i] = image_pos end
  end
  local out = {}
  for r = 0, R - 1 do
    local row = {}
    for t = 1, Lt do row[t] = flat[r * Lt + t] end
    local p = pos and pos[r + 1]
    if p == nil then
      for _ = 1, n_img do out[#out + 1] = M.IGNORE end
      for t = 1, Lt do out[#out + 1] = row[t] end
    else
      for t = 1, p do out[#out + 1] = row[t] end
      for _ = 1, n_img do out[#out + 1] = M.IGNORE end
      for t = p + 2, Lt do out[#out + 1] = row[t] end
    end
  end
  local L = pos and (Lt - 1 + n_img) or (Lt + n_img)
  return out, L
end

function MLLM:labels(text_labels, R, Lt, image_pos)
  return M.splice_labels(text_labels, R, Lt, self.num_image_tokens, image_pos)
end

-- Sequence length after splicing
function MLLM:seq_len(Lt, placeholder)
  return placeholder and (Lt - 1 + self.num_image_tokens) or (Lt + self.num_image_tokens)
end

-- Loads a pivot-layout checkpoint (names vision.*, projector.*, llm.*; e.g. the fixtures' policy.safetensors, or
-- our own saved checkpoints): `ck` is a path or an hf.open checkpoint. opts.ck_prefix: the checkpoint's own
-- prefix (default ""). Tensors of tower parts this model did not create (dropped layers, post_layernorm, head)
-- are ignored; every var must be present.
function MLLM:load(ck, opts)
  opts = opts or {}
  local hf = require "pivot.hf"
  if type(ck) == "string" then ck = hf.open(self.ctx, ck) end
  local mine = self.name ~= "" and (self.name .. ".") or ""
  local theirs = opts.ck_prefix and opts.ck_prefix ~= "" and (opts.ck_prefix .. ".") or ""
  local ignore = {}
  local esc = function(s) return (s:gsub("[%.%-%+%*%?%[%]%^%$%(%)%%]", "%%%0")) end
  for _, p in ipairs(self.vision.dropped or {}) do ignore[#ignore + 1] = "^" .. esc(theirs) .. "vision%." .. p end
  if self.llm.dims.tied then ignore[#ignore + 1] = "^" .. esc(theirs) .. "llm%.lm_head%.weight$" end
  for _, p in ipairs(opts.ignore or {}) do ignore[#ignore + 1] = p end
  return pv.scope(self.name ~= "" and self.name or "mllm", function()
    return hf.load_params(ck, self:parameters(), {
      strict = opts.strict,
      ignore = ignore,
      map = function(n)
        if n:sub(1, #theirs) ~= theirs then return nil end
        return mine .. n:sub(#theirs + 1)
      end,
    })
  end)
end

-- Loads separate Hugging Face checkpoints: dirs = {vision = SigLIP dir or file, llm = Qwen2 dir or file,
-- projector = optional pivot-layout file with projector.{0,2}.*}.
function MLLM:load_hf(dirs)
  local hf = require "pivot.hf"
  return pv.scope(self.name ~= "" and self.name or "mllm", function()
    if dirs.vision then hf.load_vision_tower(hf.open(self.ctx, dirs.vision), self.vision) end
    if dirs.llm then
      local ig = self.llm.dims.tied and {"^lm_head%.weight$"} or nil
      hf.load_params(hf.open(self.ctx, dirs.llm), self.llm:parameters(), {map = hf.maps.qwen2(self.llm.name),
        ignore = ig})
    end
    if dirs.projector then
      local mine = self.projector.name .. "."
      hf.load_params(hf.open(self.ctx, dirs.projector), self.projector:parameters(), {map = function(n)
        local rest = n:match("^projector%.(.*)$") or n:match("^model%.mm_projector%.(.*)$")
        return rest and (mine .. rest) or false
      end})
    end
    return self
  end)
end

return M
