-- pivot.eval.vqa: VQA accuracy by question type, by scoring closed candidate answers.
--
--   local vqa = require "pivot.eval.vqa"
--   local items = vqa.items(world, samples)            -- every question of the samples, with its candidates
--   local r = vqa.evaluate(ctx, model, tok, items, {batch = 8, chat = {system = ...}})
--   r.by_type.color, r.by_type.knowledge, ...          -- accuracy per question type
--   r.vision                                           -- accuracy over all vision-centric questions (micro)
--   r.vision_macro                                     -- mean of the vision types' accuracies
--   r.knowledge, r.overall, r.counts[type], r.predictions[i] = {answer, predicted, correct, scores}
--
-- items: {image = float[3*S*S] (or path, or rgb + S), question, answer, type, candidates = {...}, vision = bool}
-- (vision defaults to type ~= "knowledge"). Each candidate is scored by its summed log-prob under the model (the
-- ChatML completion "{candidate}<|im_end|>\n" after the prompt, as the model was trained; opts.chat is passed to
-- pivot.chat.build; or opts.image_mode / opts.system as a pivot.study environment has them); the prediction is the
-- argmax. opts.normalize = true divides by the number of completion
-- tokens instead.
--
-- Batching: questions are grouped by their number of candidates K; a plan scores Bq questions x K candidates
-- (R = K * Bq rows, row j*Bq + b = candidate j of question b, sharing image b through repeat_images), so the
-- vision tower runs once per image. Plans are cached per (Bq, K, text length bucket, image position) and model.
-- model: a pivot.models.mllm model, or anything with forward(g, {pixel_values, input_ids, repeat_images,
-- image_pos}) -> {logits [R, L, V]}, labels(text_labels, R, Lt, image_pos) -> flat labels, L, and an image size
-- (model.vision.cfg.image_size or model.image_size).
local pv = require "pivot"
local chat = require "pivot.chat"
local obj = require "pivot.objectives"
local probe = require "pivot.eval.probe"
local ffi = pv.ffi

local M = {}

M.VISION_TYPES = {"color", "shape", "size", "count", "position", "relation"}

local FLOATS = ffi.typeof("float[?]")

local cache = setmetatable({}, {__mode = "k"})

local function image_size(model)
  if model.vision and model.vision.cfg then return model.vision.cfg.image_size, model.vision.cfg.num_channels or 3 end
  if model.image_size then return model.image_size, model.num_channels or 3 end
  pv.raise("vqa: cannot tell the model's image size")
end

-- the scoring plan for (Bq questions, K candidates, Lt text positions, image positions)
local function score_plan(ctx, model, Bq, K, Lt, pos, opts)
  local per = cache[model]
  if not per then
    per = {}
    cache[model] = per
  end
  local key = table.concat({Bq, K, Lt, pos and table.concat(pos, ",") or "prefix", opts.normalize and "avg" or "sum",
    opts.backend or "cpu"}, "/")
  local e = per[key]
  if e then return e end
  local S, Ch = image_size(model)
  local R = K * Bq
  local g = ctx:graph()
  local px = g:input("vqa.pixel_values", {Bq, Ch, S, S})
  local ids = g:input("vqa.input_ids", {R, Lt}, "i32")
  local seq, labels = probe.with_frozen(model, function()
    local out = model:forward(g, {pixel_values = px, input_ids = ids, repeat_images = K, image_pos = pos})
    local L = out.logits.shape[2]
    local lab = g:input("vqa.labels", {R, L}, "i32")
    return obj.sequence_logps(g, out.logits, lab, {average = opts.normalize}), lab
  end)
  seq:mark_output()
  e = {graph = g, px = px, ids = ids, labels = labels, seq = seq, R = R, L = labels.shape[2],
    plan = g:compile{backend = opts.backend, threads = opts.threads}}
  per[key] = e
  return e
end

local function round_up(x, m) return math.ceil(x / m) * m end

-- vqa.score(ctx, model, tok, items, opts) -> list (per item) of {scores = {per candidate}, best = index}
function M.score(ctx, model, tok, items, opts)
  opts = opts or {}
  local chat_opts = probe.chat_opts(opts)
  local S, Ch = image_size(model)
  local per_img = Ch * S * S
  -- build rows and group by K
  local groups, order = {}, {}
  local built = {}
  for i, it in ipairs(items) do
    local cands = it.candidates
    if type(cands) ~= "table" or #cands == 0 then pv.raise(string.format("vqa: item %d has no candidates", i)) end
    local rows = {}
    for j, c in ipairs(cands) do rows[j] = chat.build(tok, it.question, c, chat_opts) end
    built[i] = rows
    local K = #cands
    if not groups[K] then
      groups[K] = {}
      order[#order + 1] = K
    end
    local gr = groups[K]
    gr[#gr + 1] = i
  end
  table.sort(order)
  local results = {}
  local pad = opts.pad_id or 0
  for _, K in ipairs(order) do
    local list = groups[K]
    local Bq = math.min(opts.batch or 8, #list)
    local maxlen = 0
    for _, i in ipairs(list) do for _, r in ipairs(built[i]) do maxlen = math.max(maxlen, #r.ids) end end
    local Lt = round_up(maxlen, opts.length_multiple or 8)
    -- sub-group by image position so each plan has static positions
    local bypos, porder = {}, {}
    for _, i in ipairs(list) do
      local p = built[i][1].image_pos
      for _, r in ipairs(built[i]) do
        if r.image_pos ~= p then pv.raise("vqa: the candidates of one question have different image positions") end
      end
      local pk = p == nil and "prefix" or tostring(p)
      if not bypos[pk] then
        bypos[pk] = {}
        porder[#porder + 1] = pk
      end
      local t = bypos[pk]
      t[#t + 1] = i
    end
    for _, pk in ipairs(porder) do
      local sub = bypos[pk]
      local p0 = built[sub[1]][1].image_pos
      local pos
      if p0 ~= nil then
        pos = {}
        for r = 1, K * Bq do pos[r] = p0 end
      end
      local e = score_plan(ctx, model, Bq, K, Lt, pos, opts)
      local R = e.R
      local pixels = FLOATS(Bq * per_img)
      local ids = ffi.new("int32_t[?]", R * Lt)
      for first = 1, #sub, Bq do
        local chunk = {}
        for b = 1, Bq do chunk[b] = sub[math.min(first + b - 1, #sub)] end -- pad with the last question
        ffi.fill(pixels, Bq * per_img * 4)
        local samples = {}
        for b, i in ipairs(chunk) do
          probe.pixels(ctx, items[i], S, pixels, (b - 1) * per_img)
          for j = 1, K do samples[(j - 1) * Bq + b] = built[i][j] end
        end
        local bt = chat.batch(samples, Lt, {pad_id = pad})
        for k = 1, R * Lt do ids[k - 1] = bt.ids[k] end
        local lab = model:labels(bt.labels, R, Lt, pos)
        e.plan:write(e.px, pixels)
        e.plan:write(e.ids, ids)
        e.plan:write(e.labels, lab)
        e.plan:run()
        local seq = e.plan:read(e.seq)
        for b = 1, math.min(Bq, #sub - first + 1) do
          local i = chunk[b]
          local scores, best = {}, 1
          for j = 1, K do
            scores[j] = seq[(j - 1) * Bq + b]
            if scores[j] > scores[best] then best = j end
          end
          results[i] = {scores = scores, best = best}
        end
      end
    end
  end
  return results
end

-- vqa.evaluate(ctx, model, tok, items, opts) -> {by_type, counts, vision, vision_macro, knowledge, overall,
-- predictions}
function M.evaluate(ctx, model, tok, items, opts)
  opts = opts or {}
  local res = M.score(ctx, model, tok, items, opts)
  local right, count = {}, {}
  local vr, vn, kr, kn, ar = 0, 0, 0, 0, 0
  local preds = {}
  for i, it in ipairs(items) do
    local r = res[i]
    local predicted = it.candidates[r.best]
    local ok = predicted == it.answer
    local t = it.type or "unknown"
    right[t] = (right[t] or 0) + (ok and 1 or 0)
    count[t] = (count[t] or 0) + 1
    local vision = it.vision
    if vision == nil then vision = t ~= "knowledge" end
    if vision then vr, vn = vr + (ok and 1 or 0), vn + 1
    else kr, kn = kr + (ok and 1 or 0), kn + 1 end
    ar = ar + (ok and 1 or 0)
    preds[i] = {answer = it.answer, predicted = predicted, correct = ok, scores = r.scores, type = t}
  end
  local by = {}
  local ms, mn = 0, 0
  for t, n in pairs(count) do
    by[t] = right[t] / n
    if t ~= "knowledge" then ms, mn = ms + by[t], mn + 1 end
  end
  return {by_type = by, counts = count, vision = vn > 0 and vr / vn or nil, vision_macro = mn > 0 and ms / mn or nil,
    knowledge = kn > 0 and kr / kn or nil, overall = #items > 0 and ar / #items or nil, predictions = preds,
    n = #items}
end

-- vqa.items(world, samples, opts) -> items of every question of the samples (opts.types: a set of types to keep)
function M.items(world, samples, opts)
  opts = opts or {}
  local out = {}
  for _, s in ipairs(samples) do
    for _, q in ipairs(s.questions) do
      if not opts.types or opts.types[q.type] then
        out[#out + 1] = {image = s.image, rgb = s.rgb, S = s.S, question = q.question, answer = q.answer,
          type = q.type, vision = q.vision, candidates = world:candidates(q), objects = q.objects}
      end
    end
  end
  return out
end

return M
