-- pivot.eval.seg: the segmentation probe (as iancovert/patch-seg): a frozen encoder's per-patch features, a
-- per-patch linear head D -> C trained with multi-label BCE (a sigmoid per class), scored on held-out images by
-- macro recall and mIoU at threshold 0.5.
--
--   local seg = require "pivot.eval.seg"
--   local r = seg.linear(ctx, tower, train_items, test_items, {steps = 300, lr = 1e-2})
--   r.recall, r.miou                      -- macro recall (mean over classes of TP/(TP+FN)), mIoU (TP/(TP+FP+FN))
--   r.per_class[c + 1] = {class = c, name, tp, fp, fn, recall, iou}
--   -- items: {image = float[3*S*S] (or path, or rgb + S), targets = [P*C] 0/1 (uint8/float cdata or a Lua list)}
--   -- world samples work directly: targets come from s:patch_labels(patch, {attribute = opts.attribute ("shape"),
--   -- min_fraction = opts.min_fraction (0)}); class 0 is the background
--
--   local tp, fp, fn = seg.confusion(g, logits, targets)   -- graph nodes [C] from logits [M, C] and 0/1 targets
--   local s = seg.scores(tp, fp, fn, {ignore = {[0] = true}, names = {...}})  -- host numbers -> metrics
--   local s = seg.evaluate_logits(ctx, logits, targets, M, C)            -- the same on given numbers
--
-- Macro averages skip classes with no support (recall: TP+FN = 0; IoU: TP+FP+FN = 0); opts.ignore excludes
-- classes (e.g. the background) from both. Prediction: sigmoid(z) > 0.5, i.e. z > 0.
local pv = require "pivot"
local probe = require "pivot.eval.probe"
local ffi = pv.ffi

local M = {}

local FLOATS = ffi.typeof("float[?]")

-- graph nodes tp, fp, fn [C] (f32 counts) of logits z [M, C] against 0/1 targets y [M, C]
function M.confusion(g, z, y)
  -- pred = 1 for z > 0 (z >= 1e-20), else 0, exactly: 1 - relu(1 - relu(z) * 1e20)
  local pred = 1 - (1 - z:relu():scale(1e20)):relu()
  local tp = (pred * y):sum(0)
  local fp = pred:sum(0) - tp
  local fn = y:sum(0) - tp
  return tp, fp, fn
end

-- host metrics from per-class counts (Lua lists indexed 1..C for classes 0..C-1)
function M.scores(tp, fp, fn, opts)
  opts = opts or {}
  local ignore = opts.ignore or {}
  local C = #tp
  local per, rs, rn, is, inn = {}, 0, 0, 0, 0
  for c = 0, C - 1 do
    local a, b, d = tp[c + 1], fp[c + 1], fn[c + 1]
    local e = {class = c, name = opts.names and opts.names[c + 1] or nil, tp = a, fp = b, fn = d}
    if a + d > 0 then e.recall = a / (a + d) end
    if a + b + d > 0 then e.iou = a / (a + b + d) end
    if e.precision == nil and a + b > 0 then e.precision = a / (a + b) end
    if not ignore[c] then
      if e.recall then rs, rn = rs + e.recall, rn + 1 end
      if e.iou then is, inn = is + e.iou, inn + 1 end
    end
    per[c + 1] = e
  end
  return {recall = rn > 0 and rs / rn or 0 / 0, miou = inn > 0 and is / inn or 0 / 0, per_class = per,
    classes_recall = rn, classes_iou = inn}
end

local function to_floats(x, count, what)
  if type(x) == "cdata" then
    local t = tostring(ffi.typeof(x))
    if t:find("float", 1, true) then return x end
    local a = FLOATS(count)
    for i = 0, count - 1 do a[i] = x[i] end
    return a
  end
  if type(x) == "table" then
    if #x < count then pv.raise(string.format("seg: %s has %d values, %d expected", what, #x, count)) end
    local a = FLOATS(count)
    for i = 1, count do a[i - 1] = x[i] end
    return a
  end
  pv.raise("seg: " .. what .. ": expected a cdata array or a Lua list")
end

-- seg.evaluate_logits(ctx, logits, targets, M, C, opts) -> scores (as seg.scores) for given logits [M, C] and
-- 0/1 targets [M, C] (cdata or Lua lists), computed by the same graph as the probe
function M.evaluate_logits(ctx, logits, targets, m, C, opts)
  opts = opts or {}
  local g = ctx:graph()
  local z = g:input("seg.z", {m, C})
  local y = g:input("seg.y", {m, C})
  local tp, fp, fn = M.confusion(g, z, y)
  for _, t in ipairs {tp, fp, fn} do t:mark_output() end
  local plan = g:compile{backend = opts.backend, threads = opts.threads}
  plan:write(z, to_floats(logits, m * C, "logits"))
  plan:write(y, to_floats(targets, m * C, "targets"))
  plan:run()
  local a, b, d = plan:read(tp), plan:read(fp), plan:read(fn)
  g:free()
  return M.scores(a, b, d, opts)
end

-- targets of the items -> float[n*P*C], C, class names
local function targets_of(items, P, patch_px, opts)
  local n = #items
  local C, names
  local out
  for i, it in ipairs(items) do
    local t, nc = it.targets, it.n_classes
    if t == nil and type(it.patch_labels) == "function" then
      local pl = it:patch_labels(patch_px or (it.S / math.sqrt(P)), {attribute = opts.attribute,
        min_fraction = opts.min_fraction})
      t, nc, names = pl.data, pl.n_classes, names or pl.classes
      if pl.n_patches ~= P then
        pv.raise(string.format("seg: item %d has %d label patches, the tower %d", i, pl.n_patches, P))
      end
    end
    if t == nil then pv.raise(string.format("seg: item %d has no targets (targets or a world sample)", i)) end
    nc = nc or opts.num_classes or (type(t) == "table" and #t / P) or nil
    if not nc then pv.raise("seg: give opts.num_classes (or item.n_classes) for cdata targets") end
    if C and nc ~= C then pv.raise(string.format("seg: item %d has %d classes, earlier items %d", i, nc, C)) end
    C = nc
    out = out or FLOATS(n * P * C)
    local base = (i - 1) * P * C
    if type(t) == "table" then
      for k = 1, P * C do out[base + k - 1] = t[k] end
    else
      for k = 0, P * C - 1 do out[base + k] = t[k] end
    end
  end
  return out, C, names
end

-- seg.linear(ctx, tower, train_items, test_items, opts) -> {recall, miou, per_class, loss, curve, ...}
-- opts: steps (300), lr (1e-2), weight_decay (1e-4), standardize (true), ignore (classes to leave out of the
-- means, e.g. {[0] = true}), attribute / min_fraction (world samples), num_classes, batch / layer (features),
-- backend, threads
function M.linear(ctx, tower, train_items, test_items, opts)
  opts = opts or {}
  local S, patch = probe.tower_geometry(tower)
  local fo = {pool = "none", batch = opts.batch, layer = opts.layer, backend = opts.backend, threads = opts.threads}
  local Xtr, n, P, D = probe.features(ctx, tower, train_items, fo)
  local Xte, m = probe.features(ctx, tower, test_items, fo)
  -- label patches in the items' own pixels: the tower's patch grid over the item's size
  local grid = math.floor(math.sqrt(P) + 0.5)
  local function patch_px(items)
    local s = items[1] and items[1].S or S
    return s / grid
  end
  local Ytr, C, names = targets_of(train_items, P, patch_px(train_items), opts)
  local Yte, C2 = targets_of(test_items, P, patch_px(test_items), opts)
  if C2 ~= C then pv.raise(string.format("seg: train items have %d classes, test items %d", C, C2)) end
  local rows, trows = n * P, m * P
  if opts.standardize ~= false then probe.standardize(Xtr, rows, D, Xte, trows) end
  -- start the biases at the log-odds of the class frequencies (the background dominates)
  local bias = {}
  for c = 0, C - 1 do
    local s = 0
    for r = 0, rows - 1 do s = s + Ytr[r * C + c] end
    local p = math.min(math.max(s / rows, 1e-3), 1 - 1e-3)
    bias[c + 1] = math.log(p / (1 - p))
  end
  local head = probe.fit_head(ctx, Xtr, rows, D, Ytr, C, {loss = "bce", steps = opts.steps, lr = opts.lr,
    weight_decay = opts.weight_decay, backend = opts.backend, threads = opts.threads, prefix = "eval.seg",
    init_bias = bias})
  local ok, res = pcall(function()
    local g = ctx:graph()
    local x = g:input("seg.x", {trows, D})
    local y = g:input("seg.y", {trows, C})
    local z = x:linear(g:use(head.W), g:use(head.b))
    local tp, fp, fn = M.confusion(g, z, y)
    for _, t in ipairs {tp, fp, fn} do t:mark_output() end
    local plan = g:compile{backend = opts.backend, threads = opts.threads}
    plan:write(x, Xte)
    plan:write(y, Yte)
    plan:run()
    local r = M.scores(plan:read(tp), plan:read(fp), plan:read(fn), {ignore = opts.ignore, names = names})
    g:free()
    r.loss, r.curve, r.n_train, r.n_test, r.num_classes, r.patches, r.dim = head.loss, head.curve, n, m, C, P, D
    r.classes = names
    return r
  end)
  head:free()
  if not ok then error(res, 0) end
  return res
end
M.probe = M.linear

-- seg.items(samples, opts) -> items for seg.linear from world samples with explicit targets
-- (opts.patch in the samples' pixels, attribute, min_fraction)
function M.items(samples, opts)
  opts = opts or {}
  local out = {}
  for i, s in ipairs(samples) do
    local pl = s:patch_labels(opts.patch, {attribute = opts.attribute, min_fraction = opts.min_fraction})
    out[i] = {image = s.image, rgb = s.rgb, S = s.S, targets = pl.data, n_classes = pl.n_classes}
  end
  return out
end

return M
