-- pivot.train.optim: AdamW over a model's parameters, emitted as graph nodes (pv_adamw), with parameter groups,
-- in-graph global-norm clipping and gradient-accumulation buffers.
--
--   local optim = require "pivot.train.optim"
--   local opt = optim.adamw(ctx, model, {weight_decay = 0.0, lr_mult = {vision = 0.2}, accum = 1})
--   -- in a graph, after g:backward(loss):
--   local hyper = g:input("adamw.hyper", {6})
--   local gn = opt:add_updates(g, hyper, {max_grad_norm = 1.0})     -- grad_norm node (before clipping), an output
--   -- every step: plan:write(hyper, opt:hyper(lr, t)) with t the 1-based optimizer step
--
-- Parameters come from module:parameters() ({name, var, module, no_decay}); a list of modules is accepted (shared
-- vars counted once). Frozen modules (m:is_frozen()) are skipped entirely: no entry, no optimizer state.
-- Groups (torch-style param_groups, with HF's rule): weight decay applies to params without no_decay (biases and
-- norm weights are no_decay), lr_mult maps a var-name prefix to a multiplier of the base lr (the longest matching
-- prefix wins), e.g. {["vision"] = 0.2}. Both end up as pv_adamw's per-node lr_scale and weight_decay.
-- State: vars "<param>.adam_m", "<param>.adam_v" (f32, zero-initialised; found again if they exist) and, when
-- accum > 1, "<param>.grad_acc". Defaults as torch/HF: betas 0.9/0.999, eps 1e-8, weight_decay 0.
local pv = require "pivot"

local M = {}

M.defaults = {beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0}

local function is_module(x) return type(x) == "table" and type(x.parameters) == "function" end

-- model: a module, a list of modules, or a list of parameter entries {name, var, no_decay, module}
local function collect(model)
  local list = {}
  if is_module(model) then
    model:parameters(list)
  elseif type(model) == "table" then
    for i, x in ipairs(model) do
      if is_module(x) then x:parameters(list)
      elseif type(x) == "table" and x.var then list[#list + 1] = x
      else pv.raise("optim: model entry " .. i .. " is neither a module nor a parameter entry") end
    end
  else
    pv.raise("optim: model must be a module or a list of modules, got " .. type(model))
  end
  return list
end
M.collect = collect

-- all parameter vars of a model (frozen ones included), each once, in order
function M.model_vars(model)
  local seen, r = {}, {}
  for _, p in ipairs(collect(model)) do
    if not seen[p.var.name] then
      seen[p.var.name] = true
      r[#r + 1] = p.var
    end
  end
  return r
end

-- prefix match on the var name; the longest prefix wins
local function lr_mult_of(name, lr_mult)
  if not lr_mult then return 1.0, nil end
  local best, bestlen = 1.0, -1
  local key
  for prefix, mult in pairs(lr_mult) do
    if type(mult) ~= "number" then pv.raise("optim: lr_mult['" .. tostring(prefix) .. "'] is not a number") end
    if name:sub(1, #prefix) == prefix and #prefix > bestlen then
      best, bestlen, key = mult, #prefix, prefix
    end
  end
  return best, key
end

local Opt = {}
Opt.__index = Opt
M.AdamW = Opt

local function state_var(ctx, name, shape)
  local v = ctx:find_var(name)
  if v then
    local same = #v.shape == #shape
    for i = 1, #shape do same = same and v.shape[i] == shape[i] end
    if not same or v.dtype ~= "f32" then
      pv.raise(string.format("optim: state variable '%s' exists with shape [%s] %s, wanted [%s] f32", name,
        table.concat(v.shape, ", "), v.dtype, table.concat(shape, ", ")))
    end
    return v
  end
  return ctx:var(name, shape)
end

-- optim.adamw(ctx, model, opts): opts beta1, beta2 (or betas = {b1, b2}), eps, weight_decay, lr_mult, accum,
-- include = function(entry) -> bool (an extra filter)
function M.adamw(ctx, model, opts)
  opts = opts or {}
  local b1 = opts.beta1 or (opts.betas and opts.betas[1]) or M.defaults.beta1
  local b2 = opts.beta2 or (opts.betas and opts.betas[2]) or M.defaults.beta2
  local self = setmetatable({ctx = ctx, beta1 = b1, beta2 = b2, eps = opts.eps or M.defaults.eps,
    weight_decay = opts.weight_decay or M.defaults.weight_decay, lr_mult = opts.lr_mult, accum = opts.accum or 1,
    entries = {}, by_name = {}, frozen = {}}, Opt)
  for _, p in ipairs(collect(model)) do
    local name = p.name or p.var.name
    if self.by_name[name] then goto continue end
    if p.module and p.module.is_frozen and p.module:is_frozen() then
      self.frozen[#self.frozen + 1] = p.var
      goto continue
    end
    if opts.include and not opts.include(p) then goto continue end
    if p.var.dtype ~= "f32" then pv.raise("optim: parameter '" .. name .. "' is " .. p.var.dtype .. ", AdamW needs f32") end
    do
      local mult, key = lr_mult_of(name, self.lr_mult)
      local e = {name = name, var = p.var, no_decay = p.no_decay or false, lr_scale = mult, lr_key = key,
        wd = p.no_decay and 0.0 or self.weight_decay}
      e.m = state_var(ctx, name .. ".adam_m", p.var.shape)
      e.v = state_var(ctx, name .. ".adam_v", p.var.shape)
      if self.accum > 1 then e.acc = state_var(ctx, name .. ".grad_acc", p.var.shape) end
      self.entries[#self.entries + 1] = e
      self.by_name[name] = e
    end
    ::continue::
  end
  if #self.entries == 0 then pv.raise("optim: no trainable parameters (are all modules frozen?)") end
  return self
end

-- the parameter groups: {lr_scale, weight_decay, names = {...}, numel} in a stable order
function Opt:groups()
  local map, list = {}, {}
  for _, e in ipairs(self.entries) do
    local key = string.format("%.17g/%.17g", e.lr_scale, e.wd)
    local grp = map[key]
    if not grp then
      grp = {lr_scale = e.lr_scale, weight_decay = e.wd, lr_key = e.lr_key, names = {}, numel = 0}
      map[key] = grp
      list[#list + 1] = grp
    end
    grp.names[#grp.names + 1] = e.name
    grp.numel = grp.numel + e.var.numel
  end
  return list
end

function Opt:num_trainable()
  local n = 0
  for _, e in ipairs(self.entries) do n = n + e.var.numel end
  return n
end

-- the vars to checkpoint: m, v (and the accumulators), in entry order
function Opt:state_vars()
  local r = {}
  for _, e in ipairs(self.entries) do
    r[#r + 1] = e.m
    r[#r + 1] = e.v
    if e.acc then r[#r + 1] = e.acc end
  end
  return r
end
function Opt:param_vars()
  local r = {}
  for _, e in ipairs(self.entries) do r[#r + 1] = e.var end
  return r
end

-- the 6 values of the hyper input for optimizer step t (1-based): lr, beta1, beta2, eps, 1 - beta1^t, 1 - beta2^t
function Opt:hyper(lr, t)
  return {lr, self.beta1, self.beta2, self.eps, 1 - self.beta1 ^ t, 1 - self.beta2 ^ t}
end

-- Global norm of a list of gradient nodes: sqrt(sum_i sumsq(g_i)) -> [1]
function M.global_norm(grads)
  local sq = {}
  for i, gr in ipairs(grads) do sq[i] = gr:sumsq() end
  if #sq == 1 then return sq[1]:sqrt() end
  return pv.concat(sq, 0):sum_all():sqrt()
end

-- clip coefficient min(1, max_norm / norm) as 1 / (relu(norm / max_norm - 1) + 1) -> [1]
function M.clip_coef(norm, max_norm)
  return 1 / (norm:scale(1 / max_norm):add_scalar(-1):relu():add_scalar(1))
end

-- Adds the AdamW updates to g. grad_of(entry) -> the gradient node of entry (nil: the param gets no update, like
-- torch skips params whose .grad is None); default: g:grad of the param's node. Returns the grad-norm node
-- ([1], before clipping, marked as an output) and the number of updated params.
-- opts: max_grad_norm (nil/0: no clipping), grad_of, name (prefix of node names)
function Opt:add_updates(g, hyper, opts)
  opts = opts or {}
  local grad_of = opts.grad_of or function(e)
    local node = g:use(e.var) -- the graph's one node of this var (a new, dead node if the forward did not use it)
    return g:grad(node)
  end
  local items, grads = {}, {}
  for _, e in ipairs(self.entries) do
    local gr = grad_of(e)
    if gr then
      gr:set_output(false) -- consumed by the update in this plan: no need to keep the buffer alive
      items[#items + 1] = {e = e, grad = gr}
      grads[#grads + 1] = gr
    end
  end
  if #items == 0 then pv.raise("optim: no trainable parameter gets a gradient from the loss") end
  local norm = M.global_norm(grads)
  norm:set_name("grad_norm")
  norm:mark_output()
  local coef
  local mx = opts.max_grad_norm
  if mx and mx > 0 then
    coef = M.clip_coef(norm, mx)
    coef:set_name("clip_coef")
  end
  -- the clip coefficient rides in AdamW's hyper tensor as its 7th entry (the op scales the gradient in f32, the same
  -- numbers as a separate multiply, without a pass over every gradient)
  local hyper_c = (coef and not opts.scale_in_place) and pv.concat({hyper, coef}, 0) or hyper
  for _, it in ipairs(items) do
    local e = it.e
    local gr = it.grad
    if coef and opts.scale_in_place then
      -- gr is a var-node (an accumulator): scale it in place by an update that runs before the AdamW below
      -- (updates run in creation order), so no temporary of the params' size is needed
      g:assign(gr, gr, coef, false)
    end
    g:adamw(e.var, gr, e.m, e.v, hyper_c, e.lr_scale, e.wd)
  end
  return norm, #items
end

-- Micro-step accumulation: acc += grad for every entry with a gradient (after g:backward of the 1/k-scaled loss).
function Opt:add_accumulate(g)
  local n = 0
  for _, e in ipairs(self.entries) do
    if not e.acc then pv.raise("optim: no accumulators (create the optimizer with accum > 1)") end
    local gr = g:grad(g:use(e.var))
    if gr then
      g:assign(e.acc, gr, nil, true)
      n = n + 1
    end
  end
  if n == 0 then pv.raise("optim: no trainable parameter gets a gradient from the loss") end
  return n
end

-- The update graph of accumulation: the global norm of the accumulators, then (as updates, which run after every
-- other node in creation order) acc <- acc * clip_coef, AdamW from acc, and acc <- acc * 0.
function Opt:add_accumulated_updates(g, hyper, opts)
  opts = opts or {}
  local norm, n = self:add_updates(g, hyper, {max_grad_norm = opts.max_grad_norm, scale_in_place = true,
    grad_of = function(e) return g:use(e.acc) end})
  local zero = g:fill(0, {1})
  for _, e in ipairs(self.entries) do g:assign(e.acc, e.acc, zero, false) end
  return norm, n
end

-- zeroes the accumulators outside a plan (e.g. after an aborted cycle)
function Opt:zero_accumulators()
  for _, e in ipairs(self.entries) do if e.acc then e.acc:fill(0) end end
end

return M
