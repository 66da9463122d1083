-- pivot.models.siglip: the SigLIP vision tower (transformers' SiglipVisionModel, fixed resolution; the SigLIP2
-- FixRes checkpoints use the same layout).
--
--   local siglip = require "pivot.models.siglip"
--   local tower = siglip.new(ctx, "vision", cfg, {feature_layer = -2})   -- cfg: config.json as a table
--   hf.load_vision_tower(hf.open(ctx, dir), tower)
--   local out = tower:forward(g, pixel_values)                          -- [B, C, H, W]
--   out.features, out.hidden_states, out.last_hidden_state, out.pooler_output
--
-- Var names are <prefix>.<transformers name>: "vision.embeddings.patch_embedding.weight",
-- "vision.encoder.layers.0.self_attn.q_proj.weight", "vision.post_layernorm.weight", "vision.head.probe", ...
--
-- opts:
--  feature_layer: index into hidden_states (0 = embeddings, k = output of encoder layer k-1; negative counts
--    from the end as in HF: -1 = last layer, -2 = second to last). Default: the last layer.
--  with_post_layernorm (default: feature_layer is the last layer): compute last_hidden_state.
--  with_head (default: feature_layer is the last layer and config.json's vision_use_head is not false):
--    compute pooler_output with the MAP head.
--  keep_all: create every layer, post_layernorm and the head even when the features come from an earlier
--    layer (so a checkpoint round-trips and unused parameters exist, with zero gradients). Without it, layers
--    past the ones needed are not created; tower.dropped lists their name patterns (hf.load_vision_tower
--    ignores those tensors).
--
-- out.hidden_states is a Lua list: out.hidden_states[i + 1] is HF's hidden_states[i] (index 1 = embeddings).
local pv = require "pivot"
local nn = require "pivot.nn"
local hf = require "pivot.hf"

local M = {}

local Tower = setmetatable({}, {__index = nn.Module})
Tower.__index = Tower
M.Tower = Tower

local ACTS = {
  gelu_pytorch_tanh = "gelu_tanh", gelu_new = "gelu_tanh", gelu_fast = "gelu_tanh", gelu_python = "gelu",
  gelu = "gelu", relu = "relu", silu = "silu", swish = "silu", quick_gelu = "quick_gelu",
}
function M.activation(x, act)
  if act == "quick_gelu" then return x * x:scale(1.702):sigmoid() end
  return x[act](x)
end

-- reads and checks the vision config fields (cfg: the config.json table of a SiglipVisionModel, or the
-- "vision_config" of a full SiglipModel config)
function M.read_cfg(cfg, kind)
  if type(cfg) ~= "table" then pv.raise("siglip: expected a config table, got " .. type(cfg)) end
  if type(cfg.vision_config) == "table" then
    local vc = cfg.vision_config
    hf.config_source(vc, (hf.config_source(cfg) or "config.json") .. ": vision_config")
    cfg = vc
  end
  local c = {}
  c.hidden_size = hf.get(cfg, "hidden_size", "integer")
  c.intermediate_size = hf.get(cfg, "intermediate_size", "integer")
  c.num_hidden_layers = hf.get(cfg, "num_hidden_layers", "integer")
  c.num_attention_heads = hf.get(cfg, "num_attention_heads", "integer")
  c.num_channels = hf.get(cfg, "num_channels", "integer", 3)
  c.patch_size = hf.get(cfg, "patch_size", "integer")
  if kind == "siglip2" then
    c.num_patches = hf.get(cfg, "num_patches", "integer", 256)
  else
    c.image_size = hf.get(cfg, "image_size", "integer")
  end
  c.hidden_act = hf.get(cfg, "hidden_act", "string", "gelu_pytorch_tanh")
  c.layer_norm_eps = hf.get(cfg, "layer_norm_eps", "number", 1e-6)
  c.vision_use_head = hf.get(cfg, "vision_use_head", "boolean", true)
  if not ACTS[c.hidden_act] then pv.raise("config.json: field 'hidden_act': unsupported activation '" .. c.hidden_act .. "'") end
  if c.hidden_size % c.num_attention_heads ~= 0 then
    pv.raise(string.format("config.json: hidden_size %d is not a multiple of num_attention_heads %d", c.hidden_size,
      c.num_attention_heads))
  end
  if kind ~= "siglip2" and c.image_size % c.patch_size ~= 0 then
    pv.raise(string.format("config.json: image_size %d is not a multiple of patch_size %d", c.image_size, c.patch_size))
  end
  c.head_dim = math.floor(c.hidden_size / c.num_attention_heads)
  return c
end

local function child(parent, key, m) return parent:add(key, m) end

-- a module with sub-modules created under parent (name = parent path . key)
local function sub(ctx, parent, key)
  return child(parent, key, nn.module(ctx, parent:path(key)))
end

local function mlp(ctx, parent, key, c)
  local m = sub(ctx, parent, key)
  m.fc1 = child(m, "fc1", nn.linear(ctx, m:path("fc1"), c.hidden_size, c.intermediate_size))
  m.fc2 = child(m, "fc2", nn.linear(ctx, m:path("fc2"), c.intermediate_size, c.hidden_size))
  m.act = ACTS[c.hidden_act]
  m.forward = function(self, g, x)
    return self.fc2:forward(g, M.activation(self.fc1:forward(g, x), self.act))
  end
  return m
end

-- additive key mask [B, 1, 1, S] from a [B, S] 0/1 mask tensor (any dtype); nil stays nil
function M.key_mask(mask)
  if mask == nil then return nil end
  if mask.dtype ~= "f32" then mask = mask:cast("f32") end
  local B, S = mask.shape[1], mask.shape[2]
  return mask:add_scalar(-1):scale(1e30):reshape(B, 1, 1, S)
end

local function attention(ctx, parent, key, c)
  local m = sub(ctx, parent, key)
  local D = c.hidden_size
  for _, k in ipairs {"k_proj", "v_proj", "q_proj", "out_proj"} do
    m[k] = child(m, k, nn.linear(ctx, m:path(k), D, D, {std = 1 / math.sqrt(D)}))
  end
  m.H, m.hd = c.num_attention_heads, D / c.num_attention_heads
  -- x [B, N, D], mask: additive [B, 1, 1, N] or nil
  m.forward = function(self, g, x, mask)
    local B, N = x.shape[1], x.shape[2]
    local function heads(t) return t:reshape(B, N, self.H, self.hd) end
    local q = heads(self.q_proj:forward(g, x))
    local k = heads(self.k_proj:forward(g, x))
    local v = heads(self.v_proj:forward(g, x))
    local o = nn.sdpa(q, k, v, {mask = mask, scale = 1 / math.sqrt(self.hd)})
    return self.out_proj:forward(g, o:reshape(B, N, D))
  end
  return m
end

local function encoder_layer(ctx, parent, key, c)
  local m = sub(ctx, parent, key)
  local D = c.hidden_size
  m.self_attn = attention(ctx, m, "self_attn", c)
  m.layer_norm1 = child(m, "layer_norm1", nn.layer_norm(ctx, m:path("layer_norm1"), D, c.layer_norm_eps))
  m.mlp = mlp(ctx, m, "mlp", c)
  m.layer_norm2 = child(m, "layer_norm2", nn.layer_norm(ctx, m:path("layer_norm2"), D, c.layer_norm_eps))
  m.forward = function(self, g, x, mask)
    return self:scope(function()
      x = x + self.self_attn:forward(g, self.layer_norm1:forward(g, x), mask)
      return x + self.mlp:forward(g, self.layer_norm2:forward(g, x))
    end)
  end
  return m
end

-- MAP pooling head (SiglipMultiheadAttentionPoolingHead)
local function map_head(ctx, parent, key, c)
  local m = sub(ctx, parent, key)
  local D = c.hidden_size
  m:param("probe", {1, 1, D}, {init = "normal", std = 1 / math.sqrt(D)})
  local att = sub(ctx, m, "attention")
  att:param("in_proj_weight", {3 * D, D}, {init = "normal", std = 1 / math.sqrt(D)})
  att:param("in_proj_bias", {3 * D}, {no_decay = true})
  att.out_proj = child(att, "out_proj", nn.linear(ctx, att:path("out_proj"), D, D))
  m.attention = att
  m.layernorm = child(m, "layernorm", nn.layer_norm(ctx, m:path("layernorm"), D, c.layer_norm_eps))
  m.mlp = mlp(ctx, m, "mlp", c)
  m.H, m.hd = c.num_attention_heads, D / c.num_attention_heads
  -- x [B, N, D] (last_hidden_state), mask: additive [B, 1, 1, N] or nil -> [B, D]
  m.forward = function(self, g, x, mask)
    return self:scope(function()
      local B, N = x.shape[1], x.shape[2]
      local H, hd = self.H, self.hd
      local a = self.attention
      local w, b = a:p(g, "in_proj_weight"), a:p(g, "in_proj_bias")
      local q = self:p(g, "probe"):linear(w:slice(0, 0, D), b:slice(0, 0, D)) -- [1, 1, D]
      q = q:expand{B, 1, D}:reshape(B, 1, H, hd)
      local k = x:linear(w:slice(0, D, 2 * D), b:slice(0, D, 2 * D)):reshape(B, N, H, hd)
      local v = x:linear(w:slice(0, 2 * D, 3 * D), b:slice(0, 2 * D, 3 * D)):reshape(B, N, H, hd)
      local o = nn.sdpa(q, k, v, {mask = mask, scale = 1 / math.sqrt(hd)}):reshape(B, 1, D)
      o = a.out_proj:forward(g, o)
      o = o + self.mlp:forward(g, self.layernorm:forward(g, o))
      return o:reshape(B, D)
    end)
  end
  return m
end

-- Resolves the options into what to create and compute (shared with siglip2).
function M.plan_layers(c, opts)
  local L = c.num_hidden_layers
  local fl = opts.feature_layer
  if fl == nil then fl = L end
  if type(fl) ~= "number" or fl ~= math.floor(fl) then pv.raise("siglip: feature_layer must be an integer") end
  if fl < 0 then fl = L + 1 + fl end
  if fl < 0 or fl > L then
    pv.raise(string.format("siglip: feature_layer %s is out of range for %d layers (hidden_states 0..%d, or -%d..-1)",
      tostring(opts.feature_layer), L, L, L + 1))
  end
  local full = fl == L
  local with_post = opts.with_post_layernorm
  if with_post == nil then with_post = full end
  local with_head = opts.with_head
  if with_head == nil then with_head = full and c.vision_use_head end
  if with_head and not c.vision_use_head then pv.raise("siglip: with_head, but config.json has vision_use_head = false") end
  local compute = (with_post or with_head) and L or fl
  local p = {feature_layer = fl, with_post = with_post, with_head = with_head, compute_layers = compute}
  if opts.keep_all then
    p.create_layers, p.create_post, p.create_head = L, true, c.vision_use_head
  else
    p.create_layers, p.create_post, p.create_head = compute, with_post or with_head, with_head
  end
  return p
end

-- builds the encoder, post_layernorm and head of a tower (shared with siglip2)
function M.build_common(ctx, tower, c, p)
  local D = c.hidden_size
  local enc = sub(ctx, tower, "encoder")
  local layers = sub(ctx, enc, "layers")
  tower.layers = {}
  for i = 0, p.create_layers - 1 do tower.layers[i + 1] = encoder_layer(ctx, layers, tostring(i), c) end
  tower.encoder = enc
  if p.create_post then
    tower.post_layernorm = child(tower, "post_layernorm", nn.layer_norm(ctx, tower:path("post_layernorm"), D,
      c.layer_norm_eps))
  end
  if p.create_head then tower.head = map_head(ctx, tower, "head", c) end
  local dropped = {}
  for i = p.create_layers, c.num_hidden_layers - 1 do dropped[#dropped + 1] = "encoder%.layers%." .. i .. "%." end
  if not p.create_post then dropped[#dropped + 1] = "post_layernorm%." end
  if not p.create_head then dropped[#dropped + 1] = "head%." end
  tower.dropped = dropped
  tower.num_layers = p.create_layers
  tower.has_post_layernorm = p.create_post
  tower.has_head = p.create_head and true or false
  tower.feature_layer = p.feature_layer
  tower.with_post_layernorm, tower.with_head, tower.compute_layers = p.with_post, p.with_head, p.compute_layers
end

-- runs the encoder from the embeddings x; fills out.hidden_states, features, last_hidden_state, pooler_output
function M.run_common(tower, g, x, mask, out)
  out = out or {}
  local hs = {x}
  for i = 1, tower.compute_layers do
    x = tower.layers[i]:forward(g, x, mask)
    hs[i + 1] = x
  end
  out.hidden_states = hs
  out.features = hs[tower.feature_layer + 1]
  if tower.with_post_layernorm or tower.with_head then
    local pln = tower.post_layernorm
    out.last_hidden_state = pln:scope(function() return pln:forward(g, hs[#hs]) end)
  end
  if tower.with_head then out.pooler_output = tower.head:forward(g, out.last_hidden_state, mask) end
  return out
end

-- siglip.new(ctx, prefix, cfg, opts) -> tower (an nn.Module)
function M.new(ctx, prefix, cfg, opts)
  opts = opts or {}
  return pv.scope(prefix ~= "" and prefix or "siglip", function()
    local c = M.read_cfg(cfg, "siglip")
    local p = M.plan_layers(c, opts)
    local tower = nn.module(ctx, prefix or "", Tower)
    tower.kind, tower.cfg, tower.prefix = "siglip", c, prefix or ""
    local D, C, P = c.hidden_size, c.num_channels, c.patch_size
    local side = math.floor(c.image_size / P)
    tower.num_patches = side * side
    local emb = sub(ctx, tower, "embeddings")
    local pe = sub(ctx, emb, "patch_embedding")
    pe:param("weight", {D, C, P, P}, {init = "normal", std = 1 / math.sqrt(C * P * P)})
    pe:param("bias", {D}, {no_decay = true})
    local pos = sub(ctx, emb, "position_embedding")
    pos:param("weight", {tower.num_patches, D}, {init = "normal", std = 1 / math.sqrt(D), no_decay = true})
    emb.patch_embedding, emb.position_embedding = pe, pos
    tower.embeddings = emb
    M.build_common(ctx, tower, c, p)
    return tower
  end)
end

-- tower:embed(g, pixel_values [B, C, H, W]) -> [B, N, D]
function Tower:embed(g, pixel_values)
  local emb = self.embeddings
  return emb:scope(function()
    local c = self.cfg
    local sh = pixel_values.shape
    if #sh ~= 4 or sh[2] ~= c.num_channels or sh[3] ~= c.image_size or sh[4] ~= c.image_size then
      pv.raise(string.format("pixel_values: expected [B, %d, %d, %d], got %s", c.num_channels, c.image_size,
        c.image_size, hf.shape_str(sh)))
    end
    local pe, pos = emb.patch_embedding, emb.position_embedding
    local x = pixel_values:patch_embed(pe:p(g, "weight"), pe:p(g, "bias"), c.patch_size)
    return x + pos:p(g, "weight")
  end)
end

-- tower:forward(g, pixel_values [B, C, H, W]) -> {hidden_states, features, last_hidden_state, pooler_output}
function Tower:forward(g, pixel_values)
  local x = self:embed(g, pixel_values)
  return M.run_common(self, g, x, nil, {})
end

return M
