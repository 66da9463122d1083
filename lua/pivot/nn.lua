-- pivot.nn: modules that own named variables and emit graph nodes.
--
-- A module owns parameters (pv vars named by their full dotted path, e.g. "llm.model.layers.0.mlp.up_proj.weight",
-- which is also the Hugging Face name after the model's prefix) and child modules. Modules never compute: a
-- forward function takes a graph and tensor nodes and returns nodes. Frozen modules bind their vars with g:use
-- (no gradient, no backward nodes); trainable ones with g:param.
local pv = require "pivot"

local nn = {}

local Module = {}
Module.__index = Module
nn.Module = Module

-- nn.module(ctx, name [, class]) -> a new empty module whose params are named name .. "." .. key
function nn.module(ctx, name, class)
  local m = setmetatable({ctx = ctx, name = name or "", _params = {}, _pmap = {}, _children = {}, _cmap = {},
    frozen = false}, class or Module)
  return m
end

function Module:path(key)
  if self.name == "" then return key end
  return self.name .. "." .. key
end

-- m:param(key, shape, opts): creates the var <path>.<key>. opts: init ("zeros"|"ones"|"normal"|"uniform"), std,
-- bound, no_decay (biases and norm weights are excluded from weight decay), dtype.
function Module:param(key, shape, opts)
  opts = opts or {}
  local full = self:path(key)
  local v = self.ctx:find_var(full)
  if v then
    local same = #v.shape == #shape
    for i = 1, #shape do same = same and v.shape[i] == shape[i] end
    if not same then
      pv.raise(string.format("%s: variable exists with shape [%s], wanted [%s]", full, table.concat(v.shape, ", "),
        table.concat(shape, ", ")))
    end
  else
    v = self.ctx:var(full, shape, opts)
  end
  local e = {key = key, var = v, module = self, no_decay = opts.no_decay or false}
  self._params[#self._params + 1] = e
  self._pmap[key] = e
  return v
end

-- m:add(key, child): registers a child module (its name must be m:path(key))
function Module:add(key, child)
  self._children[#self._children + 1] = {key = key, module = child}
  self._cmap[key] = child
  child.parent = self
  return child
end

function Module:child(key) return self._cmap[key] end

-- all parameters, depth first, in creation order: list of {name = full name, var, module, key, no_decay}
function Module:parameters(out)
  out = out or {}
  for _, e in ipairs(self._params) do
    out[#out + 1] = {name = e.var.name, var = e.var, module = e.module, key = e.key, no_decay = e.no_decay}
  end
  for _, c in ipairs(self._children) do c.module:parameters(out) end
  return out
end

function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p.var.numel end
  return n
end

-- freezing: a frozen module (or one under a frozen parent) gets no gradient
function Module:freeze(on)
  if on == nil then on = true end
  self.frozen = on
  return self
end
function Module:unfreeze() return self:freeze(false) end
function Module:is_frozen()
  local m = self
  while m do
    if m.frozen then return true end
    m = m.parent
  end
  return false
end

-- m:p(g, key) -> the graph node of parameter key (trainable unless frozen)
function Module:p(g, key)
  local e = self._pmap[key]
  if not e then pv.raise(self:path(key) .. ": no such parameter") end
  if self:is_frozen() then return g:use(e.var) end
  return g:param(e.var)
end
function Module:has(key) return self._pmap[key] ~= nil end

-- runs fn with errors prefixed by this module's path
function Module:scope(fn, ...)
  return pv.scope(self.name ~= "" and self.name or "module", fn, ...)
end

-------------------------------------------------------------------------------------------- basic layers
-- Linear: y = x·Wᵀ + b, W [out, in] (torch layout)
function nn.linear(ctx, name, din, dout, opts)
  opts = opts or {}
  local m = nn.module(ctx, name)
  local std = opts.std or (1 / math.sqrt(din))
  m:param("weight", {dout, din}, {init = "normal", std = std})
  if opts.bias ~= false then m:param("bias", {dout}, {init = opts.bias_init or "zeros", std = opts.bias_std, no_decay = true}) end
  m.din, m.dout = din, dout
  m.forward = function(self, g, x)
    return x:linear(self:p(g, "weight"), self:has("bias") and self:p(g, "bias") or nil)
  end
  return m
end

function nn.layer_norm(ctx, name, dim, eps, opts)
  opts = opts or {}
  local m = nn.module(ctx, name)
  m:param("weight", {dim}, {init = "ones", no_decay = true})
  if opts.bias ~= false then m:param("bias", {dim}, {init = "zeros", no_decay = true}) end
  m.eps = eps or 1e-5
  m.forward = function(self, g, x)
    return x:layer_norm(self:p(g, "weight"), self:has("bias") and self:p(g, "bias") or nil, self.eps)
  end
  return m
end

function nn.rms_norm(ctx, name, dim, eps)
  local m = nn.module(ctx, name)
  m:param("weight", {dim}, {init = "ones", no_decay = true})
  m.eps = eps or 1e-6
  m.forward = function(self, g, x) return x:rms_norm(self:p(g, "weight"), self.eps) end
  return m
end

function nn.embedding(ctx, name, n, dim, opts)
  opts = opts or {}
  local m = nn.module(ctx, name)
  m:param("weight", {n, dim}, {init = "normal", std = opts.std or 0.02})
  m.forward = function(self, g, ids) return self:p(g, "weight"):embedding(ids) end
  return m
end

-------------------------------------------------------------------------------------------- attention
-- Scaled dot-product attention composed from GEMMs and a masked softmax.
--  q [B, T, H, D], k and v [B, S, Hkv, D] (H a multiple of Hkv: query head j uses kv head j // (H / Hkv))
--  opts: causal (bool), mask (additive, broadcastable to [B, H, T, S]), scale (default 1/sqrt(D))
--  returns [B, T, H, D]
function nn.sdpa(q, k, v, opts)
  opts = opts or {}
  local B, T, H, D = q.shape[1], q.shape[2], q.shape[3], q.shape[4]
  local S, Hkv = k.shape[2], k.shape[3]
  local function heads(x) return x:permute(0, 2, 1, 3) end -- [B, n, T, D] (axes are 0-based)
  local qh, kh, vh = heads(q), heads(k), heads(v)
  local scale = opts.scale or (1 / math.sqrt(D))
  local o
  if Hkv ~= H then
    -- grouped-query attention without copying k and v: query heads [B, Hkv, rep, T, D] against k, v
    -- [B, Hkv, 1, S, D]; the GEMM broadcasts over the rep axis (query head j uses kv head j // rep)
    local rep = math.floor(H / Hkv)
    local qg = qh:reshape(B, Hkv, rep, T, D)
    local kg, vg = kh:reshape(B, Hkv, 1, S, D), vh:reshape(B, Hkv, 1, S, D)
    local mask = opts.mask
    if mask and #mask.shape == 4 then -- [.., H or 1, T, S] -> [.., Hkv or 1, rep or 1, T, S]
      local ms = mask.shape
      if ms[2] == H then mask = mask:reshape(ms[1], Hkv, rep, ms[3], ms[4])
      else mask = mask:reshape(ms[1], 1, 1, ms[3], ms[4]) end
    end
    local p = qg:matmul(kg, false, true):softmax{mask = mask, scale = scale, causal = opts.causal}
    o = p:matmul(vg):reshape(B, H, T, D)
  else
    local scores = qh:matmul(kh, false, true) -- [B, H, T, S]
    local p = scores:softmax{mask = opts.mask, scale = scale, causal = opts.causal}
    o = p:matmul(vh) -- [B, H, T, D]
  end
  return o:permute(0, 2, 1, 3) -- [B, T, H, D]
end

return nn
