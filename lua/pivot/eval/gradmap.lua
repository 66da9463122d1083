-- pivot.eval.gradmap: gradient maps over the image tokens (the paper's Grad-CAM comparison of SFT and DPO), their
-- focus on the objects a question is about, and PNG panels.
--
--   local gradmap = require "pivot.eval.gradmap"
--   local item = gradmap.item(sample, question_or_pair)    -- from a world sample and one of s.questions / s.pairs
--   local sft = gradmap.compute(ctx, model, tok, item, {loss = "sft"})
--   local dpo = gradmap.compute(ctx, model, tok, item, {loss = "dpo", beta = 0.1})
--   sft.map        -- {N numbers}: per image token, the L1 norm over channels of d loss / d image_embeds
--   sft.focus      -- share of the map's mass on the patches of item.objects (nil without an instance map)
--   sft.uniform    -- the share a uniform map would have (object patches / all patches)
--   sft.grid, sft.object_patches (list of 0/1), sft.loss, sft.logps ({chosen, rejected} for DPO)
--   gradmap.panel("panel.png", sample.rgb, sample.S, {sft.map, dpo.map}, {"SFT", "DPO"},
--                 {outline = sft.object_patches, caption = item.question})      -- image | map | map ...
--
-- item: {image = float[3*S*S] (or path, or rgb + S), rgb, S, instance = int32[S*S] (0 background, k = object k),
--        question, answer (the chosen answer), rejected (DPO), objects = {k, ...}}
-- Real data: items = gradmap.read_jsonl(ctx, "items.jsonl", {image_root = DIR}) (image path, question, answer,
-- rejected, optional bbox [x0, y0, x1, y1] in pixels of the original image or mask PNG); compute() then gives the
-- focus with each patch weighted by the fraction of it the region covers (gradmap.region_weights), r.weights, and
-- r.object_patches (patches the region touches, for the panel's outline). gradmap.load_rgb(ctx, path, S) gives the
-- panel's image; gradmap.release(model) frees the cached plans. pivot.pipeline.eval_checkpoints uses these.
-- How: one plan runs the vision tower + projector (image_embeds [1, N, H]); a second plan feeds image_embeds as a
-- trainable input to the LLM and the loss, runs the backward and reads g:grad(image_embeds). The model's own
-- parameters are bound frozen, so only the input gets a gradient. SFT: the SFT loss on the answer. DPO: the sigmoid
-- DPO loss of (answer, rejected) against reference log-probs: opts.ref_logps = {chosen, rejected}, or
-- opts.reference (a frozen reference MLLM), or by default the model's own log-probs (policy = reference: the
-- log 2 case of a DPO run's first step). Plans are cached per model and shape.
-- opts: loss ("sft" | "dpo"), beta (0.1), chat (pivot.chat.build options; or image_mode / system as a pivot.study
-- environment has them), pad_id, min_fraction (a patch belongs to an
-- object if at least max(1, ceil(min_fraction * pixels per patch)) of its pixels do; default 0 = any pixel),
-- backend, threads.
local pv = require "pivot"
local chat = require "pivot.chat"
local obj = require "pivot.objectives"
local probe = require "pivot.eval.probe"
local plot = require "pivot.plot"
local ffi = pv.ffi

local M = {}

local FLOATS = ffi.typeof("float[?]")
local cache = setmetatable({}, {__mode = "k"})

local function per_model(model)
  local t = cache[model]
  if not t then
    t = {}
    cache[model] = t
  end
  return t
end

local function geometry(model)
  local c = model.vision.cfg
  return c.image_size, c.num_channels or 3, model.num_image_tokens, model.hidden
end

-- plan: pixels [1, C, S, S] -> image_embeds [1, N, H]
local function encode_plan(ctx, model, opts)
  local per = per_model(model)
  local key = "encode/" .. (opts.backend or "cpu")
  if per[key] then return per[key] end
  local S, Ch = geometry(model)
  local g = ctx:graph()
  local px = g:input("gradmap.pixel_values", {1, Ch, S, S})
  local emb = probe.with_frozen(model, function() return model:encode_images(g, px).image_embeds end)
  emb:mark_output()
  local e = {graph = g, px = px, emb = emb, plan = g:compile{backend = opts.backend, threads = opts.threads}}
  per[key] = e
  return e
end

-- plan: image_embeds (trainable input) + ids -> loss, d loss / d image_embeds, map [1, N]
local function loss_plan(ctx, model, kind, R, Lt, pos, opts)
  local per = per_model(model)
  local key = table.concat({kind, R, Lt, pos and tostring(pos[1]) or "prefix", opts.beta or 0.1,
    opts.backend or "cpu"}, "/")
  if per[key] then return per[key] end
  local _, _, N, H = geometry(model)
  local g = ctx:graph()
  local e = {graph = g}
  e.emb = g:input("gradmap.image_embeds", {1, N, H})
  e.ids = g:input("gradmap.input_ids", {R, Lt}, "i32")
  probe.with_frozen(model, function()
    if kind ~= "logps" then e.emb:set_trainable(true) end
    local out = model:forward(g, {image_embeds = e.emb, input_ids = e.ids, repeat_images = R, image_pos = pos})
    local L = out.logits.shape[2]
    e.labels = g:input("gradmap.labels", {R, L}, "i32")
    e.seq = obj.sequence_logps(g, out.logits, e.labels)
    e.seq:mark_output()
    if kind == "sft" then
      e.loss = obj.sft_loss(g, out.logits, e.labels)
    elseif kind == "dpo" then
      e.rc, e.rr = obj.reference_inputs(g, 1, "gradmap.")
      e.loss = obj.dpo(g, {policy_chosen = e.seq:slice(0, 0, 1), policy_rejected = e.seq:slice(0, 1, 2),
        reference_chosen = e.rc, reference_rejected = e.rr, beta = opts.beta or 0.1}).loss
    end
    if e.loss then
      e.loss:mark_output()
      g:backward(e.loss)
      local gr = g:grad(e.emb)
      if not gr then pv.raise("gradmap: the loss does not depend on the image embeddings") end
      e.map = gr:abs():sum(-1) -- [1, N]
      e.map:mark_output()
    end
  end)
  e.plan = g:compile{backend = opts.backend, threads = opts.threads}
  per[key] = e
  return e
end

local function round_up(x, m) return math.ceil(x / m) * m end

-- token rows of an item: {chosen [, rejected]}, Lt, image_pos list (or nil)
local function rows_of(tok, item, kind, opts)
  local q = item.question or (item.prompt and item.prompt:gsub("^<image>\n?", ""))
  if not q then pv.raise("gradmap: the item has no question") end
  local a = item.answer or item.chosen
  if not a then pv.raise("gradmap: the item has no answer") end
  local co = probe.chat_opts(opts)
  local rows = {chat.build(tok, q, a, co)}
  if kind == "dpo" or kind == "logps" then
    local rej = item.rejected
    if not rej then pv.raise("gradmap: a DPO map needs item.rejected") end
    rows[2] = chat.build(tok, q, rej, co)
  end
  local maxlen = 0
  for _, r in ipairs(rows) do maxlen = math.max(maxlen, #r.ids) end
  local Lt = round_up(maxlen, 8)
  local bt = chat.batch(rows, Lt, {pad_id = opts.pad_id or 0})
  local pos
  if rows[1].image_pos ~= nil then
    pos = {}
    for i = 1, #rows do pos[i] = rows[i].image_pos end
  end
  return bt, #rows, Lt, pos
end

local function encode(ctx, model, item, opts)
  local S, Ch, N, H = geometry(model)
  local e = encode_plan(ctx, model, opts)
  local px = FLOATS(Ch * S * S)
  probe.pixels(ctx, item, S, px, 0)
  e.plan:write(e.px, px)
  e.plan:run()
  return e.plan:read_raw(e.emb), N, H
end

local function run_rows(ctx, model, kind, item, tok, emb, opts)
  local bt, R, Lt, pos = rows_of(tok, item, kind, opts)
  local e = loss_plan(ctx, model, kind, R, Lt, pos, opts)
  e.plan:write(e.emb, emb)
  e.plan:write(e.ids, bt.ids)
  e.plan:write(e.labels, (model:labels(bt.labels, R, Lt, pos)))
  return e
end

-- gradmap.logps(ctx, model, tok, item, opts) -> chosen, rejected: summed log-probs of the item's two answers
function M.logps(ctx, model, tok, item, opts)
  opts = opts or {}
  local emb = encode(ctx, model, item, opts)
  local e = run_rows(ctx, model, "logps", item, tok, emb, opts)
  e.plan:run()
  local s = e.plan:read(e.seq)
  return s[1], s[2]
end

-- patches (0/1 list over the grid) that contain pixels of the given objects
function M.object_patches(instance, S, grid, objects, min_fraction)
  local want = {}
  for _, k in ipairs(objects or {}) do want[k] = true end
  local counts = {}
  for p = 1, grid * grid do counts[p] = 0 end
  for y = 0, S - 1 do
    local py = math.floor(y * grid / S)
    for x = 0, S - 1 do
      local k = instance[y * S + x]
      if k ~= 0 and want[k] then
        local p = py * grid + math.floor(x * grid / S) + 1
        counts[p] = counts[p] + 1
      end
    end
  end
  local need = math.max(1, math.ceil((min_fraction or 0) * (S / grid) ^ 2 - 1e-9))
  local out, n = {}, 0
  for p = 1, grid * grid do
    out[p] = counts[p] >= need and 1 or 0
    n = n + out[p]
  end
  return out, n
end

-- focus = share of the map's mass on the marked patches -> focus, uniform share
function M.focus(map, patches)
  local inside, total, n = 0, 0, 0
  for p = 1, #map do
    total = total + map[p]
    if patches[p] == 1 then
      inside = inside + map[p]
      n = n + 1
    end
  end
  return total > 0 and inside / total or 0, n / #map
end

-- gradmap.compute(ctx, model, tok, item, opts) -> {map, grid, focus, uniform, object_patches, loss, logps}
function M.compute(ctx, model, tok, item, opts)
  opts = opts or {}
  local kind = opts.loss or "sft"
  if kind ~= "sft" and kind ~= "dpo" then pv.raise("gradmap: loss must be 'sft' or 'dpo', got " .. tostring(kind)) end
  local emb, N = encode(ctx, model, item, opts)
  local e = run_rows(ctx, model, kind, item, tok, emb, opts)
  local logps
  if kind == "dpo" then
    local rc, rr
    if opts.ref_logps then rc, rr = opts.ref_logps[1] or opts.ref_logps.chosen, opts.ref_logps[2] or opts.ref_logps.rejected
    elseif opts.reference then rc, rr = M.logps(ctx, opts.reference, tok, item, opts) end
    if rc == nil then
      -- policy = reference: the policy's own log-probs (one run to read them; the gradient does not depend on them
      -- other than through sigmoid(-beta h), which is 1/2 here)
      e.plan:write(e.rc, {0})
      e.plan:write(e.rr, {0})
      e.plan:run()
      local s = e.plan:read(e.seq)
      rc, rr = s[1], s[2]
    end
    e.plan:write(e.rc, {rc})
    e.plan:write(e.rr, {rr})
  end
  e.plan:run()
  local map = e.plan:read(e.map)
  local seq = e.plan:read(e.seq)
  logps = {chosen = seq[1], rejected = seq[2]}
  local grid = math.floor(math.sqrt(N) + 0.5)
  local r = {map = map, grid = grid, loss = e.plan:item(e.loss), logps = logps, kind = kind}
  if item.instance ~= nil and item.objects then
    local S = item.S or geometry(model)
    r.object_patches, r.n_object_patches = M.object_patches(item.instance, S, grid, item.objects, opts.min_fraction)
    r.focus, r.uniform = M.focus(map, r.object_patches)
  elseif item.bbox or item.mask then
    -- a real-data item (gradmap.read_jsonl): the patches' covered fractions of its bbox or mask
    r.weights = M.region_weights(ctx, item, (geometry(model)), grid)
    r.focus, r.uniform = M.weighted_focus(map, r.weights)
    r.object_patches = {}
    for p = 1, #r.weights do r.object_patches[p] = r.weights[p] > 0 and 1 or 0 end
  end
  return r
end

-- gradmap.release(model): frees the plans cached for model (a real model's plans hold large buffers)
function M.release(model)
  local per = cache[model]
  if not per then return end
  for _, e in pairs(per) do if e.plan and e.plan.free then e.plan:free() end end
  cache[model] = nil
end

-- gradmap.item(sample, q) -> an item from a world sample and a question (s.questions[i]) or pair (s.pairs[i])
function M.item(s, q)
  local it = {image = s.image, rgb = s.rgb, S = s.S, instance = s.instance, objects = q.objects, type = q.type}
  if q.chosen then
    it.question = (q.prompt or ""):gsub("^<image>\n?", "")
    it.answer, it.rejected = q.chosen, q.rejected
  else
    it.question, it.answer, it.rejected = q.question, q.answer, q.rejected
  end
  return it
end

---------------------------------------------------------------------------------------------------- real data
local function jtype(v)
  local json = require "pivot.json"
  if v == json.null then return "null" end
  if type(v) == "table" then return (#v > 0 or next(v) == nil) and "array" or "object" end
  return type(v)
end

local function image_info(ctx, path)
  local wh = ffi.new("int[3]")
  local st = tonumber(pv.C.pv_image_info(ctx:ptr(), path, wh, wh + 1, wh + 2))
  if st ~= 0 then return nil, ctx:last_error() end
  return wh[0], wh[1], wh[2]
end

-- gradmap.read_jsonl(ctx, path, opts) -> items: gradient-map items of real data, one JSON object per line:
--   {"image": path, "question": text (or "prompt", its <image> placeholder removed), "answer" (or "chosen"),
--    "rejected", "bbox": [x0, y0, x1, y1] (optional: pixels of the original image, x1 and y1 exclusive),
--    "mask": path (optional: a one-channel PNG of the image's size (or aspect), nonzero = the region the question
--    is about; it wins over bbox), "id" (optional)}
-- Paths are relative to opts.image_root (default: the JSONL file's folder). opts.need_rejected (default true: the
-- DPO loss needs it), opts.limit (the first N items). The first bad line raises "FILE:LINE: field 'F': ..."
-- (missing or unreadable image or mask, a bbox that is not 4 numbers with x0 < x1 and y0 < y1 inside the image).
-- Items: {id, image, question, answer, rejected, bbox, mask, width, height, line, source}.
function M.read_jsonl(ctx, path, opts)
  opts = opts or {}
  local json = require "pivot.json"
  local data = require "pivot.data"
  local f, ferr = io.open(path, "rb")
  if not f then error("gradmap: cannot open " .. tostring(path) .. ": " .. tostring(ferr), 0) end
  local text = f:read("*a")
  f:close()
  local root = opts.image_root or data.dirname(path)
  local need_rej = opts.need_rejected ~= false
  local items, lineno = {}, 0
  for line in (text:gsub("\r\n", "\n") .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    if not line:match("^%s*$") then
      local function fail(fmt, ...) error(string.format("%s:%d: ", path, lineno) .. string.format(fmt, ...), 0) end
      local ok, obj = pcall(json.decode, line, "line")
      if not ok then fail("invalid JSON: %s", tostring(obj):gsub("^line: ", "")) end
      if jtype(obj) ~= "object" then fail("expected a JSON object, got %s", jtype(obj)) end
      local function str(...)
        local names = {...}
        for _, k in ipairs(names) do
          local v = obj[k]
          if v ~= nil and v ~= json.null then
            if type(v) ~= "string" then fail("field '%s' must be a string, got %s", k, jtype(v)) end
            return v, k
          end
        end
        return nil
      end
      local it = {line = lineno, source = path}
      local img = str("image")
      if not img then fail("field 'image' missing") end
      it.image = data.join(root, img)
      if not data.file_exists(it.image) then fail("field 'image': '%s' not found (%s)", img, it.image) end
      local W, H, err = image_info(ctx, it.image)
      if not W then fail("field 'image': cannot read '%s': %s", it.image, tostring(err)) end
      it.width, it.height = W, H
      local q, qk = str("question", "prompt")
      if not q then fail("field 'question' (or 'prompt') missing") end
      if qk == "prompt" then q = q:gsub("<image>\n?", ""):gsub("^%s+", "") end
      it.question = q
      it.answer = str("answer", "chosen")
      if not it.answer then fail("field 'answer' (or 'chosen') missing") end
      it.rejected = str("rejected")
      if need_rej and not it.rejected then fail("field 'rejected' missing (the DPO loss needs it)") end
      local id = obj.id
      if type(id) == "number" then id = string.format("%.17g", id) end
      it.id = type(id) == "string" and id or string.format("%s:%d", path:match("[^/]*$"), lineno)
      local bb = obj.bbox
      if bb ~= nil and bb ~= json.null then
        if jtype(bb) ~= "array" or #bb ~= 4 then fail("field 'bbox' must be [x0, y0, x1, y1], got %s", jtype(bb)) end
        for k = 1, 4 do
          local v = bb[k]
          if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
            fail("field 'bbox': element %d is not a finite number", k)
          end
        end
        local x0, y0, x1, y1 = bb[1], bb[2], bb[3], bb[4]
        if not (x0 < x1 and y0 < y1) then fail("field 'bbox': [%g, %g, %g, %g] needs x0 < x1 and y0 < y1", x0, y0, x1, y1) end
        if x0 < 0 or y0 < 0 or x1 > W or y1 > H then
          fail("field 'bbox': [%g, %g, %g, %g] is outside the %dx%d image %s", x0, y0, x1, y1, W, H, it.image)
        end
        it.bbox = {x0, y0, x1, y1}
      end
      local mk = str("mask")
      if obj.mask ~= nil and obj.mask ~= json.null then
        it.mask = data.join(root, mk)
        if not data.file_exists(it.mask) then fail("field 'mask': '%s' not found (%s)", mk, it.mask) end
        local mw, mh, merr = image_info(ctx, it.mask)
        if not mw then fail("field 'mask': cannot read '%s': %s", it.mask, tostring(merr)) end
        if math.abs(mw / mh - W / H) > 0.02 * (W / H) then
          fail("field 'mask': the mask is %dx%d, the image %dx%d (a different aspect ratio)", mw, mh, W, H)
        end
        local okm, e2 = pcall(data.load_mask, ctx, it.mask, 1)
        if not okm then fail("field 'mask': %s", tostring(e2)) end
      end
      items[#items + 1] = it
      if opts.limit and #items >= opts.limit then break end
    end
  end
  return items
end

-- gradmap.region_weights(ctx, item, S, grid) -> list (grid*grid, row-major) of each patch's covered fraction in
-- [0, 1] of the item's region, or nil without one. The image is resized (squashed) to S x S, so patch (i, j) covers
-- the rectangle [i*W/grid, (i+1)*W/grid) x [j*H/grid, (j+1)*H/grid) of the original W x H image: with a bbox, the
-- fraction is the overlap area over the patch area; with a mask (resized to S x S, nearest neighbour, as the
-- image), the share of the patch's pixels that are nonzero.
function M.region_weights(ctx, item, S, grid)
  item._weights = item._weights or {}
  local key = S .. "/" .. grid
  if item._weights[key] then return item._weights[key] end
  local w = {}
  if item.mask then
    local data = require "pivot.data"
    local ok, m = pcall(data.load_mask, ctx, item.mask, S)
    if not ok then
      error(string.format("%s:%d: field 'mask': %s", item.source or "?", item.line or 0, tostring(m)), 0)
    end
    for j = 0, grid - 1 do
      local ya, yb = math.floor(j * S / grid + 0.5), math.floor((j + 1) * S / grid + 0.5)
      for i = 0, grid - 1 do
        local xa, xb = math.floor(i * S / grid + 0.5), math.floor((i + 1) * S / grid + 0.5)
        local on, n = 0, 0
        for y = ya, yb - 1 do
          for x = xa, xb - 1 do
            n = n + 1
            if m[y * S + x] ~= 0 then on = on + 1 end
          end
        end
        w[j * grid + i + 1] = n > 0 and on / n or 0
      end
    end
  elseif item.bbox then
    local W, H = item.width, item.height
    local x0, y0, x1, y1 = item.bbox[1], item.bbox[2], item.bbox[3], item.bbox[4]
    local cw, ch = W / grid, H / grid
    for j = 0, grid - 1 do
      local oy = math.max(0, math.min(y1, (j + 1) * ch) - math.max(y0, j * ch))
      for i = 0, grid - 1 do
        local ox = math.max(0, math.min(x1, (i + 1) * cw) - math.max(x0, i * cw))
        w[j * grid + i + 1] = math.min(1, ox * oy / (cw * ch))
      end
    end
  else
    return nil
  end
  item._weights[key] = w
  return w
end

-- gradmap.weighted_focus(map, weights) -> focus, uniform: sum(w * map) / sum(map) (nil for an all-zero map) and
-- the share a uniform map would have (mean of w)
function M.weighted_focus(map, weights)
  local inside, total, wsum = 0, 0, 0
  for p = 1, #map do
    total = total + map[p]
    inside = inside + weights[p] * map[p]
    wsum = wsum + weights[p]
  end
  return total > 0 and inside / total or nil, wsum / #map
end

-- gradmap.load_rgb(ctx, path, S) -> uint8[S*S*3] (HWC): the image as the tower sees it (resized to S x S), for panels
function M.load_rgb(ctx, path, S)
  local data = require "pivot.data"
  local px = data.load_image(ctx, path, S)
  local rgb = ffi.new("uint8_t[?]", S * S * 3)
  for c = 0, 2 do
    for i = 0, S * S - 1 do
      local v = math.floor((px[c * S * S + i] * 0.5 + 0.5) * 255 + 0.5)
      rgb[i * 3 + c] = math.max(0, math.min(255, v))
    end
  end
  return rgb
end

---------------------------------------------------------------------------------------------------- panels
-- value of a grid map at pixel (x, y) of an S x S image: nearest patch, or bilinear between patch centres
local function sample_map(map, grid, S, x, y, smooth)
  if not smooth then
    return map[math.floor(y * grid / S) * grid + math.floor(x * grid / S) + 1]
  end
  local u = (x + 0.5) * grid / S - 0.5
  local v = (y + 0.5) * grid / S - 0.5
  local x0, y0 = math.floor(u), math.floor(v)
  local fx, fy = u - x0, v - y0
  local function at(i, j)
    i = math.max(0, math.min(grid - 1, i))
    j = math.max(0, math.min(grid - 1, j))
    return map[j * grid + i + 1]
  end
  return (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy
end

-- gradmap.panel(path, rgb, size, maps, titles, opts) -> path. rgb: uint8 [size*size*3] (HWC); maps: list of grid
-- maps ({N numbers} or compute() results); titles: list of strings ("image" is prepended for the first tile).
-- opts: scale (pixels per image pixel, default so a tile is >= 160 px), alpha (0.6), smooth (bilinear upscaling),
-- outline (0/1 list of patches to outline on the maps, e.g. r.object_patches), caption (text under the tiles),
-- image_title ("image"), ctx.
function M.panel(path, rgb, size, maps, titles, opts)
  opts = opts or {}
  titles = titles or {}
  local scale = opts.scale or math.max(1, math.ceil(160 / size))
  local tile = size * scale
  local gap, top = 10, 22
  local ntiles = #maps + 1
  local caption_lines = {}
  if opts.caption then
    local maxc = math.floor((ntiles * (tile + gap)) / plot.CHAR_W) - 2
    local line = ""
    for word in tostring(opts.caption):gmatch("%S+") do
      if #line + #word + 1 > maxc and line ~= "" then
        caption_lines[#caption_lines + 1] = line
        line = word
      else
        line = line == "" and word or (line .. " " .. word)
      end
    end
    if line ~= "" then caption_lines[#caption_lines + 1] = line end
  end
  local W = gap + ntiles * (tile + gap)
  local H = top + tile + gap + #caption_lines * 12 + (#caption_lines > 0 and 4 or 0)
  local c = plot.canvas(W, H)
  local ink = {20, 20, 20}
  local function title_at(i, text)
    text = tostring(text or "")
    local x = gap + (i - 1) * (tile + gap)
    local maxc = math.floor(tile / plot.CHAR_W)
    if #text > maxc then text = text:sub(1, maxc) end
    c:text(x + math.floor((tile - plot.text_width(text)) / 2), 7, text, ink)
  end
  -- the image
  c:blit_rgb(gap, top, rgb, size, size, scale)
  title_at(1, opts.image_title or "image")
  local alpha = opts.alpha or 0.6
  for m, mp in ipairs(maps) do
    local map = mp.map or mp
    local n = #map
    local grid = math.floor(math.sqrt(n) + 0.5)
    if grid * grid ~= n then pv.raise("gradmap.panel: map " .. m .. " has " .. n .. " values, not a square grid") end
    local mx = 0
    for i = 1, n do mx = math.max(mx, map[i]) end
    if mx <= 0 then mx = 1 end
    local x0 = gap + m * (tile + gap)
    for y = 0, size - 1 do
      for x = 0, size - 1 do
        local v = sample_map(map, grid, size, x, y, opts.smooth) / mx
        local cr, cg, cb = plot.colormap(v)
        local i = (y * size + x) * 3
        local r = math.floor((1 - alpha) * rgb[i] + alpha * cr + 0.5)
        local gg = math.floor((1 - alpha) * rgb[i + 1] + alpha * cg + 0.5)
        local b = math.floor((1 - alpha) * rgb[i + 2] + alpha * cb + 0.5)
        c:rect(x0 + x * scale, top + y * scale, x0 + (x + 1) * scale - 1, top + (y + 1) * scale - 1, {r, gg, b})
      end
    end
    -- outline the object patches (edges between a marked and an unmarked patch)
    local ol = opts.outline
    if ol then
      local ps = tile / grid
      local white = {255, 255, 255}
      local function marked(i, j)
        if i < 0 or j < 0 or i >= grid or j >= grid then return false end
        return ol[j * grid + i + 1] == 1
      end
      for j = 0, grid - 1 do
        for i = 0, grid - 1 do
          if marked(i, j) then
            local xa, ya = x0 + math.floor(i * ps), top + math.floor(j * ps)
            local xb, yb = x0 + math.floor((i + 1) * ps) - 1, top + math.floor((j + 1) * ps) - 1
            if not marked(i, j - 1) then c:rect(xa, ya, xb, ya + 1, white) end
            if not marked(i, j + 1) then c:rect(xa, yb - 1, xb, yb, white) end
            if not marked(i - 1, j) then c:rect(xa, ya, xa + 1, yb, white) end
            if not marked(i + 1, j) then c:rect(xb - 1, ya, xb, yb, white) end
          end
        end
      end
    end
    title_at(m + 1, titles[m] or ("map " .. m))
  end
  for i, line in ipairs(caption_lines) do
    c:text(gap, top + tile + gap + (i - 1) * 12, line, ink)
  end
  c:write(path, opts.ctx)
  return path
end

return M
