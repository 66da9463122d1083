-- pivot.models.qwen2: Qwen2ForCausalLM (the Qwen2 / Qwen2.5 layout of Hugging Face transformers).
--
--   local qwen2 = require "pivot.models.qwen2"
--   local m = qwen2.new(ctx, "llm", cfg)            -- cfg: a config.json table (hf.read_config or json.read_file)
--   local out = m:forward(g, {input_ids = ids})      -- ids [B, T] i32/i64
--   out.logits                                       -- [B, T, V]
--   out.hidden_states[0 .. L]                        -- as HF output_hidden_states (see below)
--
-- Variables (the HF names after `prefix .. "."`):
--   <prefix>.model.embed_tokens.weight [V, H]
--   <prefix>.model.layers.i.{input_layernorm,post_attention_layernorm}.weight [H]
--   <prefix>.model.layers.i.self_attn.{q,k,v}_proj.{weight,bias}, .self_attn.o_proj.weight (no bias)
--   <prefix>.model.layers.i.mlp.{gate,up,down}_proj.weight (no biases)
--   <prefix>.model.norm.weight [H]
--   <prefix>.lm_head.weight [V, H] only when tie_word_embeddings is false (else the head is embed_tokens).
--
-- The block: h = x + o_proj(attn(rope(q), rope(k), v)) on input_layernorm(x); y = h + down(silu(gate(n)) * up(n))
-- with n = post_attention_layernorm(h). Attention is causal over the whole sequence (use_sliding_window must be
-- false), GQA: query head j uses kv head j // (n_heads / n_kv_heads). RoPE is HF rotate-half with theta from
-- `rope_theta` (released Qwen2.5 configs) or `rope_parameters.rope_theta` (transformers >= 5).
--
-- hidden_states follow HF: [0] the embeddings (or inputs_embeds), [i] for 1 <= i < L the raw residual stream after
-- layer i-1, [L] model.norm of the last layer's output (the raw last output is out.last_layer_output).
local pv = require "pivot"
local nn = require "pivot.nn"

local M = {}

local json = require "pivot.json"

-- cfg[key], with JSON null read as nil
local function opt(cfg, key)
  local v = cfg[key]
  if v == json.null then return nil end
  return v
end

local function need(cfg, key, where)
  local v = opt(cfg, key)
  if v == nil then pv.raise(string.format("%s: config has no field '%s'", where, key)) end
  return v
end

-- The RoPE base of a Qwen2 config: top-level rope_theta or rope_parameters.rope_theta (default 10000 as HF).
function M.rope_theta(cfg)
  if type(cfg.rope_theta) == "number" then return cfg.rope_theta end
  local rp = opt(cfg, "rope_parameters") or opt(cfg, "rope_scaling")
  if type(rp) == "table" and type(rp.rope_theta) == "number" then return rp.rope_theta end
  return 10000
end

-- Normalised model dimensions from an HF config table.
function M.dims(cfg, where)
  where = where or "qwen2"
  local d = {
    vocab = need(cfg, "vocab_size", where),
    hidden = need(cfg, "hidden_size", where),
    intermediate = need(cfg, "intermediate_size", where),
    layers = need(cfg, "num_hidden_layers", where),
    heads = need(cfg, "num_attention_heads", where),
    eps = opt(cfg, "rms_norm_eps") or 1e-6,
    theta = M.rope_theta(cfg),
    init_std = opt(cfg, "initializer_range") or 0.02,
    tied = opt(cfg, "tie_word_embeddings"),
  }
  d.kv_heads = opt(cfg, "num_key_value_heads") or d.heads
  d.head_dim = opt(cfg, "head_dim") or math.floor(d.hidden / d.heads)
  if d.tied == nil then d.tied = true end -- Qwen2Config's default
  if d.heads % d.kv_heads ~= 0 then
    pv.raise(string.format("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", where, d.heads,
      d.kv_heads))
  end
  if cfg.use_sliding_window == true then
    pv.raise(where .. ": use_sliding_window = true is not supported (Qwen2.5 checkpoints use full causal attention)")
  end
  local act = opt(cfg, "hidden_act") or "silu"
  if act ~= "silu" then pv.raise(where .. ": hidden_act '" .. tostring(act) .. "' is not supported (silu only)") end
  local rp = opt(cfg, "rope_parameters") or opt(cfg, "rope_scaling")
  if type(rp) == "table" then
    local rt = rp.rope_type or rp.type
    if rt ~= nil and rt ~= "default" then
      pv.raise(where .. ": rope_type '" .. tostring(rt) .. "' is not supported (default only)")
    end
  end
  return d
end

local Qwen2 = setmetatable({}, {__index = nn.Module})
Qwen2.__index = Qwen2
M.Qwen2 = Qwen2

-- qwen2.new(ctx, prefix, cfg [, opts]) -> module. prefix "" gives the plain HF names ("model.embed_tokens.weight").
-- New variables are initialised for training from scratch (normal std = initializer_range, norms 1, biases 0);
-- existing variables of the same names and shapes are reused (load weights afterwards with hf.load_params or
-- qwen2.load).
function M.new(ctx, prefix, cfg, opts)
  opts = opts or {}
  prefix = prefix or ""
  local where = prefix ~= "" and prefix or "qwen2"
  local d = M.dims(cfg, where)
  local self = nn.module(ctx, prefix, Qwen2)
  self.cfg, self.dims = cfg, d
  local std = d.init_std
  local H, I, hd = d.hidden, d.intermediate, d.head_dim
  local model = self:add("model", nn.module(ctx, self:path("model")))
  model:add("embed_tokens", nn.embedding(ctx, model:path("embed_tokens"), d.vocab, H, {std = std}))
  self.layers = {}
  for i = 0, d.layers - 1 do
    local lp = model:path("layers." .. i)
    local L = model:add("layers." .. i, nn.module(ctx, lp))
    L:add("input_layernorm", nn.rms_norm(ctx, L:path("input_layernorm"), H, d.eps))
    local at = L:add("self_attn", nn.module(ctx, L:path("self_attn")))
    at:add("q_proj", nn.linear(ctx, at:path("q_proj"), H, d.heads * hd, {std = std}))
    at:add("k_proj", nn.linear(ctx, at:path("k_proj"), H, d.kv_heads * hd, {std = std}))
    at:add("v_proj", nn.linear(ctx, at:path("v_proj"), H, d.kv_heads * hd, {std = std}))
    at:add("o_proj", nn.linear(ctx, at:path("o_proj"), d.heads * hd, H, {std = std, bias = false}))
    L:add("post_attention_layernorm", nn.rms_norm(ctx, L:path("post_attention_layernorm"), H, d.eps))
    local mlp = L:add("mlp", nn.module(ctx, L:path("mlp")))
    mlp:add("gate_proj", nn.linear(ctx, mlp:path("gate_proj"), H, I, {std = std, bias = false}))
    mlp:add("up_proj", nn.linear(ctx, mlp:path("up_proj"), H, I, {std = std, bias = false}))
    mlp:add("down_proj", nn.linear(ctx, mlp:path("down_proj"), I, H, {std = std, bias = false}))
    self.layers[i + 1] = L
  end
  model:add("norm", nn.rms_norm(ctx, model:path("norm"), H, d.eps))
  if not d.tied then self:add("lm_head", nn.linear(ctx, self:path("lm_head"), H, d.vocab, {std = std, bias = false})) end
  self.model = model
  return self
end

-- The embedding lookup: ids [..] -> [.., H]
function Qwen2:embed(g, ids)
  return pv.scope(self.name ~= "" and self.name or "qwen2", function()
    return pv.scope("model.embed_tokens", function() return self.model:child("embed_tokens"):forward(g, ids) end)
  end)
end

-- The LM-head weight node ([V, H]): lm_head.weight, or embed_tokens.weight when tied.
function Qwen2:head_weight(g)
  if self.dims.tied then return self.model:child("embed_tokens"):p(g, "weight") end
  return self:child("lm_head"):p(g, "weight")
end

-- logits [.., V] of final hidden states [.., H] (already normed)
function Qwen2:head(g, h) return h:linear(self:head_weight(g)) end

local function attention(at, g, x, pos, d, mask)
  local B, T = x.shape[1], x.shape[2]
  local hd = d.head_dim
  local q = at:child("q_proj"):forward(g, x):reshape(B, T, d.heads, hd)
  local k = at:child("k_proj"):forward(g, x):reshape(B, T, d.kv_heads, hd)
  local v = at:child("v_proj"):forward(g, x):reshape(B, T, d.kv_heads, hd)
  q = q:rope(pos, d.theta, hd)
  k = k:rope(pos, d.theta, hd)
  local o = nn.sdpa(q, k, v, {causal = true, mask = mask, scale = 1 / math.sqrt(hd)})
  return at:child("o_proj"):forward(g, o:reshape(B, T, d.heads * hd))
end

-- One decoder layer: x [B, T, H] -> [B, T, H]
function Qwen2:layer(g, i, x, pos, mask)
  local L, d = self.layers[i + 1], self.dims
  return pv.scope("model.layers." .. i, function()
    local h = x + pv.scope("self_attn", function()
      return attention(L:child("self_attn"), g, L:child("input_layernorm"):forward(g, x), pos, d, mask)
    end)
    return h + pv.scope("mlp", function()
      local mlp = L:child("mlp")
      local n = L:child("post_attention_layernorm"):forward(g, h)
      local a = mlp:child("gate_proj"):forward(g, n):swiglu(mlp:child("up_proj"):forward(g, n))
      return mlp:child("down_proj"):forward(g, a)
    end)
  end)
end

-- m:forward(g, {input_ids = [B, T] | inputs_embeds = [B, T, H], position_ids = [B, T] or [T] (default 0..T-1),
--               mask = additive attention mask broadcastable to [B, heads, T, T] (added to the causal mask),
--               no_logits = bool, logits_range = {start, end} (only these positions get logits)})
-- -> {logits = [B, T, V], hidden_states = {[0] = ..., [L] = ...}, last_hidden_state = [B, T, H] (normed),
--     last_layer_output = [B, T, H] (raw)}
function Qwen2:forward(g, a)
  a = a or {}
  return pv.scope(self.name ~= "" and self.name or "qwen2", function()
    local d = self.dims
    local x
    if a.inputs_embeds ~= nil then
      if a.input_ids ~= nil then pv.raise("forward: give input_ids or inputs_embeds, not both") end
      x = a.inputs_embeds
      local s = x.shape
      if #s ~= 3 or s[3] ~= d.hidden then
        pv.raise(string.format("forward: inputs_embeds must be [B, T, %d], got [%s]", d.hidden, table.concat(s, ", ")))
      end
    elseif a.input_ids ~= nil then
      local s = a.input_ids.shape
      if #s ~= 2 then pv.raise("forward: input_ids must be [B, T], got [" .. table.concat(s, ", ") .. "]") end
      x = self.model:child("embed_tokens"):forward(g, a.input_ids)
    else
      pv.raise("forward: input_ids or inputs_embeds is required")
    end
    local T = x.shape[2]
    local pos = a.position_ids or g:arange(T, "i64")
    local hs = {[0] = x}
    for i = 0, d.layers - 1 do
      x = self:layer(g, i, x, pos, a.mask)
      if i < d.layers - 1 then hs[i + 1] = x end
    end
    local raw = x
    x = self.model:child("norm"):forward(g, x)
    hs[d.layers] = x
    local out = {hidden_states = hs, last_hidden_state = x, last_layer_output = raw}
    if not a.no_logits then
      local h = x
      if a.logits_range then h = h:slice(1, a.logits_range[1], a.logits_range[2]) end
      out.logits = self:head(g, h)
    end
    return out
  end)
end

-- Loads the weights of an HF Qwen2 checkpoint (an open safetensors `st`, or a path) into this model's vars.
-- The checkpoint's names are the var names with `prefix .. "."` replaced by `ck_prefix` (default ""). A tied
-- checkpoint may also carry lm_head.weight (ignored). Missing tensors raise, naming the file and tensor.
function Qwen2:load(st, ck_prefix)
  if type(st) == "string" then st = self.ctx:open_safetensors(st) end
  ck_prefix = ck_prefix or ""
  local strip = self.name ~= "" and (self.name .. ".") or ""
  for _, p in ipairs(self:parameters()) do
    local key = ck_prefix .. p.name:sub(#strip + 1)
    if not st:find(key) then
      pv.raise(string.format("%s: checkpoint '%s' has no tensor '%s'", self.name ~= "" and self.name or "qwen2",
        st.path, key))
    end
    st:load_var(key, p.var)
  end
  return self
end

return M
