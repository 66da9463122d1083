-- pivot.eval.probe: frozen-encoder features and the linear probe (the paper's ImageNet linear probing, in
-- miniature).
--
--   local probe = require "pivot.eval.probe"
--   local r = probe.linear(ctx, tower, train_items, test_items, {steps = 300, lr = 1e-2})
--   r.top1, r.train_top1, r.loss, r.curve                -- held-out and train top-1, final train loss, {{step, loss}}
--   -- items: {image = float[3*S*S] (CHW, mean/std 0.5) | path, label = 0-based class}; world samples work with
--   -- opts.label = function(s) return s.labels.color end (or opts.label = "color": item.labels.color)
--
--   local X, n, P, D = probe.features(ctx, tower, items, {pool = "mean" | "none", batch = 32, layer = nil})
--   -- X: float[n*D] (pooled over patches) or float[n*P*D] (pool = "none"); one compiled plan per batch size, cached
--   -- per tower (weights are read at run time, so the plan stays valid while the tower trains)
--   local r = probe.linear_features(ctx, Xtr, ytr, Xte, yte, D, opts)  -- the probe on features you already have
--
-- The classifier: Linear(D -> C) with softmax cross-entropy (token_logprob on [N, C] logits), trained full-batch
-- (the whole train set in one plan) with AdamW and a cosine-decayed lr; features are standardised with the train
-- split's mean and std unless opts.standardize == false. Options: steps (300), lr (1e-2), weight_decay (1e-4),
-- num_classes (default: max label + 1), backend, threads, batch / layer / pool for the features.
-- probe.fit_head / probe.head_logits are the shared machinery (also used by the segmentation probe).
local pv = require "pivot"
local data = require "pivot.data"
local optim = require "pivot.train.optim"
local ffi = pv.ffi

local M = {}

local FLOATS = ffi.typeof("float[?]")

---------------------------------------------------------------------------------------------------- helpers
-- runs fn with module m frozen (its params bound with g:use), restoring the flag afterwards
function M.with_frozen(m, fn, ...)
  if type(m) ~= "table" then return fn(...) end
  local was = m.frozen
  m.frozen = true
  local res = {pcall(fn, ...)}
  m.frozen = was
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, table.maxn(res))
end

-- chat.build options from opts: opts.chat as it is, or built from a study environment's fields
-- (opts.image_mode = "placeholder" | "prefix", opts.system = message or false), as pivot.study encodes samples
function M.chat_opts(opts)
  if opts.chat then return opts.chat end
  local c = {}
  if opts.image_mode then c.image_token = opts.image_mode == "placeholder" and "<image>" or false end
  if opts.system ~= nil then c.system = opts.system end
  return c
end

-- the tower's input size and patch grid
function M.tower_geometry(tower)
  local c = tower.cfg or {}
  local S = c.image_size or tower.image_size
  if not S then pv.raise("probe: the tower has no image_size (a siglip tower is expected)") end
  local P = c.patch_size or tower.patch_size
  return S, P, tower.num_patches or (S / P) ^ 2, c.hidden_size or tower.hidden_size, c.num_channels or 3
end

-- writes the pixels of one item at out + offset (floats): item.image (float cdata of 3*S*S or a path), or
-- item.rgb (uint8 HWC of item.S^2) resized to S with bicubic interpolation
function M.pixels(ctx, item, S, out, offset)
  offset = offset or 0
  local img = item.image
  if type(img) == "string" then
    data.load_image(ctx, img, S, out, offset)
  elseif item.rgb ~= nil and item.S ~= nil and item.S ~= S then
    local st = tonumber(pv.C.pv_image_from_rgb8(ctx:ptr(), item.rgb, item.S, item.S, S, nil, nil, out + offset))
    if st ~= 0 then pv.raise("probe: resizing an image: " .. ctx:last_error()) end
  elseif type(img) == "cdata" then
    if item.S ~= nil and item.S ~= S then
      pv.raise(string.format("probe: item image is %dx%d, the tower takes %dx%d (give item.rgb to resize)", item.S,
        item.S, S, S))
    end
    ffi.copy(out + offset, img, 3 * S * S * 4)
  else
    pv.raise("probe: an item has no image (float cdata, path, or rgb + S)")
  end
end

local cache = setmetatable({}, {__mode = "k"}) -- tower -> key -> {graph, plan, px, out}

local function feature_plan(ctx, tower, B, pool, layer, opts)
  local per = cache[tower]
  if not per then
    per = {}
    cache[tower] = per
  end
  local key = table.concat({B, pool, tostring(layer), opts.backend or "cpu"}, "/")
  local e = per[key]
  if e then return e end
  local S, _, _, _, Ch = M.tower_geometry(tower)
  local g = ctx:graph()
  local px = g:input("eval.pixel_values", {B, Ch, S, S})
  local out = M.with_frozen(tower, function()
    local o = tower:forward(g, px)
    local f = o.features
    if layer ~= nil then
      local hs = o.hidden_states
      local idx = layer < 0 and (#hs + layer) or layer
      f = hs[idx + 1]
      if not f then
        pv.raise(string.format("probe: layer %d is not computed by this tower (hidden_states 0..%d)", layer, #hs - 1))
      end
    end
    if pool == "mean" then f = f:mean(1) -- [B, D]
    elseif pool ~= "none" then pv.raise("probe: pool must be 'mean' or 'none', got " .. tostring(pool)) end
    return f
  end)
  out:mark_output()
  e = {graph = g, px = px, out = out, plan = g:compile{backend = opts.backend, threads = opts.threads}}
  per[key] = e
  return e
end

-- probe.features(ctx, tower, items, opts) -> X (float[n*D] or float[n*P*D]), n, P, D
function M.features(ctx, tower, items, opts)
  opts = opts or {}
  local n = #items
  if n == 0 then pv.raise("probe.features: no items") end
  local pool = opts.pool or "mean"
  local B = math.min(opts.batch or 32, n)
  local S, _, P, _, Ch = M.tower_geometry(tower)
  local e = feature_plan(ctx, tower, B, pool, opts.layer, opts)
  local shape = e.out.shape
  local D = shape[#shape]
  local rows = pool == "mean" and 1 or shape[2]
  P = pool == "mean" and P or shape[2]
  local per_item = rows * D
  local X = FLOATS(n * per_item)
  local per_img = Ch * S * S
  local pixels = FLOATS(B * per_img)
  local tmp = FLOATS(B * per_item)
  for first = 1, n, B do
    local last = math.min(n, first + B - 1)
    ffi.fill(pixels, B * per_img * 4)
    for i = first, last do M.pixels(ctx, items[i], S, pixels, (i - first) * per_img) end
    e.plan:write(e.px, pixels)
    e.plan:run()
    e.plan:read_raw(e.out, tmp)
    ffi.copy(X + (first - 1) * per_item, tmp, (last - first + 1) * per_item * 4)
  end
  return X, n, P, D
end

-- standardises columns in place: X [n, D] (and the other matrices given) with the mean and std of X.
-- Returns mean, std (Lua lists).
function M.standardize(X, n, D, ...)
  local mean, sd = {}, {}
  for d = 0, D - 1 do
    local s, ss = 0, 0
    for i = 0, n - 1 do
      local v = X[i * D + d]
      s = s + v
      ss = ss + v * v
    end
    local m = s / n
    mean[d + 1] = m
    sd[d + 1] = math.sqrt(math.max(ss / n - m * m, 0)) + 1e-6
  end
  local function apply(A, m)
    for i = 0, m - 1 do
      local base = i * D
      for d = 0, D - 1 do A[base + d] = (A[base + d] - mean[d + 1]) / sd[d + 1] end
    end
  end
  apply(X, n)
  local others = {...}
  for i = 1, #others, 2 do
    if others[i] ~= nil then apply(others[i], others[i + 1]) end
  end
  return mean, sd
end

---------------------------------------------------------------------------------------------------- heads
local counter = 0

-- A linear head W [C, D], b [C] in temporary vars; head:free() removes them (and their optimizer state).
local function new_head(ctx, D, C, prefix)
  counter = counter + 1
  local name = string.format("%s.%d", prefix or "eval.head", counter)
  while ctx:find_var(name .. ".weight") do
    counter = counter + 1
    name = string.format("%s.%d", prefix or "eval.head", counter)
  end
  local h = {ctx = ctx, name = name, D = D, C = C}
  h.W = ctx:var(name .. ".weight", {C, D})
  h.b = ctx:var(name .. ".bias", {C})
  h.extra = {}
  function h.free(self)
    for _, v in ipairs(self.extra) do pcall(v.free, v) end
    pcall(self.W.free, self.W)
    pcall(self.b.free, self.b)
    self.extra = {}
  end
  return h
end
M.new_head = new_head

local function as_floats(x, count, what)
  if type(x) == "cdata" then return x end
  if type(x) == "table" then
    if #x < count then pv.raise(string.format("%s: %d values, %d expected", what, #x, count)) end
    local a = FLOATS(count)
    for i = 1, count do a[i - 1] = x[i] end
    return a
  end
  pv.raise(what .. ": expected a float cdata array or a Lua list")
end

-- probe.fit_head(ctx, X, n, D, Y, C, opts) -> head, curve, final loss
--   loss = "softmax": Y is a list (or int32 cdata) of n labels in 0..C-1; cross-entropy
--   loss = "bce": Y is float [n*C] (or a Lua list) of 0/1 targets; mean over n*C of -(y logsig(z) + (1-y) logsig(-z))
--   opts: steps (300), lr (1e-2), weight_decay (1e-4), beta1, beta2, backend, threads, prefix (var names)
function M.fit_head(ctx, X, n, D, Y, C, opts)
  opts = opts or {}
  local kind = opts.loss or "softmax"
  local steps = opts.steps or 300
  local lr = opts.lr or 1e-2
  local head = new_head(ctx, D, C, opts.prefix)
  if opts.init_bias then head.b:write(opts.init_bias) end
  local g = ctx:graph()
  local ok, err = pcall(function()
    local x = g:input("probe.x", {n, D})
    local W, b = g:param(head.W), g:param(head.b)
    local z = x:linear(W, b) -- [n, C]
    local loss, y
    if kind == "softmax" then
      y = g:input("probe.y", {n}, "i32")
      loss = -(z:token_logprob(y, -1):sum() / n)
    elseif kind == "bce" then
      y = g:input("probe.y", {n, C})
      local l = y * z:logsigmoid() + (1 - y) * (-z):logsigmoid()
      loss = -(l:sum_all() / (n * C))
    else
      pv.raise("probe.fit_head: loss must be 'softmax' or 'bce', got " .. tostring(kind))
    end
    loss:mark_output()
    g:backward(loss)
    local opt = optim.adamw(ctx, {{name = head.W.name, var = head.W}, {name = head.b.name, var = head.b,
      no_decay = true}}, {weight_decay = opts.weight_decay or 1e-4, beta1 = opts.beta1, beta2 = opts.beta2})
    for _, v in ipairs(opt:state_vars()) do head.extra[#head.extra + 1] = v end
    local hyper = g:input("probe.hyper", {6})
    opt:add_updates(g, hyper, {max_grad_norm = opts.max_grad_norm})
    local plan = g:compile{backend = opts.backend, threads = opts.threads}
    plan:write(x, X)
    if kind == "softmax" then
      if type(Y) == "table" then
        local a = ffi.new("int32_t[?]", n)
        for i = 1, n do
          local v = Y[i]
          if type(v) ~= "number" or v < 0 or v >= C or v % 1 ~= 0 then
            pv.raise(string.format("probe: label %d is %s, expected an integer in 0..%d", i, tostring(v), C - 1))
          end
          a[i - 1] = v
        end
        Y = a
      end
      plan:write(y, Y)
    else
      plan:write(y, as_floats(Y, n * C, "probe targets"))
    end
    local curve = {}
    local every = math.max(1, math.floor(steps / 100))
    local last
    for t = 1, steps do
      local lr_t = lr * 0.5 * (1 + math.cos(math.pi * (t - 1) / steps))
      plan:write(hyper, opt:hyper(lr_t, t))
      plan:run()
      last = plan:item(loss)
      if last ~= last then pv.raise("probe: the loss is nan at step " .. t) end
      if t == 1 or t % every == 0 or t == steps then curve[#curve + 1] = {t, last} end
    end
    -- the final loss (after the last update)
    plan:write(hyper, opt:hyper(0, steps + 1))
    plan:run()
    last = plan:item(loss)
    head.curve, head.loss = curve, last
    plan:free()
  end)
  g:free()
  if not ok then
    head:free()
    error(err, 0)
  end
  return head, head.curve, head.loss
end

-- probe.head_logits(ctx, head, X, m) -> float[m*C] (X·Wᵀ + b)
function M.head_logits(ctx, head, X, m, opts)
  opts = opts or {}
  local g = ctx:graph()
  local x = g:input("probe.x", {m, head.D})
  local z = x:linear(g:use(head.W), g:use(head.b))
  z:mark_output()
  local plan = g:compile{backend = opts.backend, threads = opts.threads}
  plan:write(x, X)
  plan:run()
  local out = plan:read_raw(z)
  g:free()
  return out
end

-- top-1 accuracy of logits [m, C] against labels (Lua list, 0-based) -> accuracy, predictions (0-based)
function M.top1(logits, m, C, labels)
  local right, pred = 0, {}
  for i = 0, m - 1 do
    local best, bi = -math.huge, 0
    for c = 0, C - 1 do
      local v = logits[i * C + c]
      if v > best then best, bi = v, c end
    end
    pred[i + 1] = bi
    if bi == labels[i + 1] then right = right + 1 end
  end
  return right / math.max(1, m), pred
end

---------------------------------------------------------------------------------------------------- probes
local function labels_of(items, opts)
  local out = {}
  local lab = opts.label
  for i, it in ipairs(items) do
    local v
    if type(lab) == "function" then v = lab(it)
    elseif type(lab) == "string" then v = it.labels and it.labels[lab]
    else v = it.label end
    if type(v) ~= "number" then pv.raise(string.format("probe: item %d has no label", i)) end
    out[i] = v
  end
  return out
end

-- copies a float matrix (so standardisation does not change the caller's features)
local function copy_floats(X, count)
  local Y = FLOATS(count)
  ffi.copy(Y, X, count * 4)
  return Y
end

-- probe.linear_features(ctx, Xtr, ytr, Xte, yte, D, opts) -> {top1, train_top1, loss, curve, n_train, n_test,
-- num_classes, predictions}. Xtr/Xte: float cdata [n*D] (or Lua lists); ytr/yte: Lua lists of 0-based labels.
function M.linear_features(ctx, Xtr, ytr, Xte, yte, D, opts)
  opts = opts or {}
  local n, m = #ytr, #yte
  if n == 0 then pv.raise("probe: no training items") end
  local C = opts.num_classes
  if not C then
    C = 0
    for _, v in ipairs(ytr) do C = math.max(C, v + 1) end
    for _, v in ipairs(yte) do C = math.max(C, v + 1) end
  end
  Xtr = copy_floats(as_floats(Xtr, n * D, "train features"), n * D)
  if m > 0 then Xte = copy_floats(as_floats(Xte, m * D, "test features"), m * D) end
  if opts.standardize ~= false then M.standardize(Xtr, n, D, m > 0 and Xte or nil, m) end
  local head = M.fit_head(ctx, Xtr, n, D, ytr, C, {loss = "softmax", steps = opts.steps, lr = opts.lr,
    weight_decay = opts.weight_decay, backend = opts.backend, threads = opts.threads, prefix = "eval.probe"})
  local ok, res = pcall(function()
    local r = {loss = head.loss, curve = head.curve, n_train = n, n_test = m, num_classes = C}
    r.train_top1 = M.top1(M.head_logits(ctx, head, Xtr, n, opts), n, C, ytr)
    if m > 0 then r.top1, r.predictions = M.top1(M.head_logits(ctx, head, Xte, m, opts), m, C, yte) end
    return r
  end)
  head:free()
  if not ok then error(res, 0) end
  return res
end

-- probe.linear(ctx, tower, train_items, test_items, opts) -> {top1, train_top1, loss, curve, ...}
function M.linear(ctx, tower, train_items, test_items, opts)
  opts = opts or {}
  local ytr, yte = labels_of(train_items, opts), labels_of(test_items or {}, opts)
  local fo = {pool = opts.pool or "mean", batch = opts.batch, layer = opts.layer, backend = opts.backend,
    threads = opts.threads}
  local Xtr, _, _, D = M.features(ctx, tower, train_items, fo)
  local Xte = #yte > 0 and (M.features(ctx, tower, test_items, fo)) or nil
  local r = M.linear_features(ctx, Xtr, ytr, Xte, yte, D, opts)
  r.dim = D
  return r
end

return M
