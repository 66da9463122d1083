-- pivot.world: the Lua side of the built-in world (a procedural dataset; runtime/io/world.c draws the scenes).
--
--   local world = require "pivot.world"
--   local w = world.new(ctx, {image_size = 32, grid = 3, min_objects = 1, max_objects = 4})
--   local s = w:sample(seed, index)       -- deterministic in (seed, index, config)
--   s.image        float[3*S*S] (CHW, mean/std 0.5)      s.rgb  uint8_t[S*S*3] (HWC)
--   s.instance     int32_t[S*S]: 0 background, k for s.objects[k] (topmost)
--   s.objects[k]   {shape, color, size (names), shape_id, color_id, size_id (0-based), cell_x, cell_y, cx, cy,
--                   bbox = {x0, y0, x1, y1} (inclusive-exclusive), visible (pixels), position ("top left", ...)}
--   s.labels       image-level probe labels, 0-based: shape / color / size of the largest visible object, count
--                  (the number of objects) and count_class (count - min_objects); s.label_object is its index
--   s:patch_labels(P [, {attribute = "shape" | "color", min_fraction = 0}]) -> {data = uint8_t[N*C], n_patches,
--                  n_classes, grid, classes}: multi-label segmentation targets. Classes: 0 "background", then
--                  1 + id of the attribute value of the pixels' object (default: shape, so 1 + #shapes classes);
--                  a patch gets class c when at least max(1, ceil(min_fraction*P*P)) of its pixels are of class c
--   s.caption      "a large red circle at the top left, a small blue square at the center."
--   s.questions    {question, answer, type, answer_type, attribute, objects = {k...}, vision = bool}: one per
--                  type that the scene allows: color, shape, size, count, position, relation (vision) and one
--                  knowledge question (vision = false, objects = {}) from the fixed bank world.KNOWLEDGE
--   s.pairs        preference pairs {prompt = "<image>\n...", chosen, rejected, type, attribute, objects,
--                  chosen_value, rejected_value}: one caption pair (one object's colour, shape, size or position
--                  changed; also chosen_objects / rejected_objects) and one per vision question (wrong colour,
--                  shape, size, count, position; relation pairs flip yes/no and have attribute "position")
--   w:candidates(question or answer type) -> the closed list of answers of that type (for VQA scoring)
--   w:vocabulary() -> every word the world's texts use (for pivot.world_tokenizer)
--   w:parse_caption(text) -> list of {size, color, shape, position}, the inverse of the caption
--   w:write_dataset(dir, seed, first, count) -> writes PNGs + dpo.jsonl (MMPR format) + sft.jsonl (LLaVA format)
--
-- Positions name the cell's third of the image: vertical top / (middle) / bottom, horizontal left / center /
-- right: "top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right".
-- Counts are written as digits ("3"), so every answer is one token.
local pv = require "pivot"
local data = require "pivot.data"
local ffi = pv.ffi
local C = pv.C

local M = {}

M.DEFAULTS = {image_size = 32, grid = 3, min_objects = 1, max_objects = 4, allow_occlusion = false, noise = 0.04,
  textured = true}
M.SYSTEM = "You are a helpful assistant."
M.CAPTION_PROMPT = "What is in the image?"
M.IMAGE_TOKEN = "<image>"
M.POSITIONS = {"top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"}
M.RELATIONS = {"left of", "right of", "above", "below"}
M.YESNO = {"yes", "no"}

-- Knowledge questions that need no image (the control group), phrased with the world's answer vocabulary.
-- answer_type says which candidate list scores them.
M.KNOWLEDGE = {
  {question = "What color is the sky?", answer = "blue", answer_type = "color"},
  {question = "What color is grass?", answer = "green", answer_type = "color"},
  {question = "What color is snow?", answer = "white", answer_type = "color"},
  {question = "What color is the sun?", answer = "yellow", answer_type = "color"},
  {question = "What color do red and yellow make?", answer = "orange", answer_type = "color"},
  {question = "What color do blue and yellow make?", answer = "green", answer_type = "color"},
  {question = "What color do red and blue make?", answer = "purple", answer_type = "color"},
  {question = "What color do blue and green make?", answer = "cyan", answer_type = "color"},
  {question = "What shape has no corners?", answer = "circle", answer_type = "shape"},
  {question = "How many corners does a triangle have?", answer = "3", answer_type = "count"},
  {question = "How many corners does a square have?", answer = "4", answer_type = "count"},
  {question = "How many corners does a diamond have?", answer = "4", answer_type = "count"},
  {question = "How many corners does a circle have?", answer = "0", answer_type = "count"},
  {question = "How many corners does a bar have?", answer = "4", answer_type = "count"},
  {question = "Does a circle have corners?", answer = "no", answer_type = "yesno"},
  {question = "Does a square have corners?", answer = "yes", answer_type = "yesno"},
  {question = "Does a ring have corners?", answer = "no", answer_type = "yesno"},
  {question = "Does a triangle have corners?", answer = "yes", answer_type = "yesno"},
  {question = "Is the sky above the grass?", answer = "yes", answer_type = "yesno"},
  {question = "Is the grass above the sky?", answer = "no", answer_type = "yesno"},
  {question = "Is a circle a shape?", answer = "yes", answer_type = "yesno"},
  {question = "Is red a color?", answer = "yes", answer_type = "yesno"},
  {question = "Is red a shape?", answer = "no", answer_type = "yesno"},
  {question = "Is a square a circle?", answer = "no", answer_type = "yesno"},
  {question = "What is the opposite of left?", answer = "right", answer_type = "position"},
  {question = "What is the opposite of right?", answer = "left", answer_type = "position"},
  {question = "What is the opposite of top?", answer = "bottom", answer_type = "position"},
  {question = "What is the opposite of bottom?", answer = "top", answer_type = "position"},
  {question = "What is the opposite of large?", answer = "small", answer_type = "size"},
  {question = "What is the opposite of small?", answer = "large", answer_type = "size"},
  {question = "What size is between small and large?", answer = "medium", answer_type = "size"},
}

-- Every fixed phrase of the world's texts (the tokenizer vocabulary is read from these, the names and the bank).
local PHRASES = {
  M.SYSTEM, "system", "user", "assistant", M.CAPTION_PROMPT,
  "a large red circle at the top left, a small blue square at the center.", "there are no objects.",
  "What color is the object at the top left?", "What shape is the red object?", "What size is the red circle?",
  "How many objects are there?", "How many red objects are there?", "Where is the red circle?",
  "Is the red circle left of the blue square?", "Is the red circle right of the blue square?",
  "Is the red circle above the blue square?", "Is the red circle below the blue square?", "yes", "no",
}

local function check(ctx, st, what)
  st = tonumber(st)
  if st ~= 0 then
    local msg = ffi.string(C.pv_last_error(ctx:ptr()))
    error(pv.status_name(st) .. ": " .. (msg ~= "" and msg or what), 3)
  end
end

local World = {}
World.__index = World
M.World = World

-- world.new(ctx, cfg): cfg fields as pv_world_config (image_size, grid, min_objects, max_objects, allow_occlusion,
-- noise, textured; booleans allowed), missing ones from world.DEFAULTS.
function M.new(ctx, cfg)
  cfg = cfg or {}
  local full = {}
  for k, v in pairs(M.DEFAULTS) do full[k] = v end
  for k, v in pairs(cfg) do
    if M.DEFAULTS[k] == nil then error("pivot.world.new: unknown config field '" .. tostring(k) .. "'", 2) end
    full[k] = v
  end
  local c = ffi.new("pv_world_config")
  c.image_size, c.grid = full.image_size, full.grid
  c.min_objects, c.max_objects = full.min_objects, full.max_objects
  c.allow_occlusion = (full.allow_occlusion == true or full.allow_occlusion == 1) and 1 or 0
  c.noise = full.noise
  c.textured = (full.textured == true or full.textured == 1) and 1 or 0
  local out = ffi.new("pv_world *[1]")
  check(ctx, C.pv_world_new(ctx:ptr(), c, out), "pv_world_new failed")
  local self = setmetatable({ctx = ctx, cfg = full, S = full.image_size, grid = full.grid,
    _w = ffi.gc(out[0], C.pv_world_free)}, World)
  local wp = self._w
  for _, attr in ipairs {"shape", "color", "size"} do
    local names, ids = {}, {}
    for i = 0, C.pv_world_count(wp, attr) - 1 do
      names[i + 1] = ffi.string(C.pv_world_name(wp, attr, i))
      ids[names[i + 1]] = i
    end
    self[attr .. "s"], self[attr .. "_id"] = names, ids
  end
  self.max_count = math.max(9, full.max_objects)
  self.counts = {}
  for i = 0, self.max_count do self.counts[i + 1] = tostring(i) end
  return self
end

function World:free()
  if self._w ~= nil then
    C.pv_world_free(ffi.gc(self._w, nil))
    self._w = nil
  end
end

---------------------------------------------------------------------------------------------------- text helpers
local function third(c, g)
  local t = 3 * (2 * c + 1)
  if t < 2 * g then return 0 end
  if t > 4 * g then return 2 end
  return 1
end
function World:position_name(cell_x, cell_y)
  return M.POSITIONS[third(cell_y, self.grid) * 3 + third(cell_x, self.grid) + 1]
end

-- attribute subsets for referring expressions, in order of preference
local DESC_SETS = {{"shape"}, {"color", "shape"}, {"size", "shape"}, {"color"}, {"size"}, {"size", "color"},
  {"size", "color", "shape"}}

local function phrase(o, set)
  local has = {}
  for _, a in ipairs(set) do has[a] = true end
  local words = {}
  if has.size then words[#words + 1] = o.size end
  if has.color then words[#words + 1] = o.color end
  words[#words + 1] = has.shape and o.shape or "object"
  return table.concat(words, " ")
end

-- A unique description of objects[k] that does not use attribute `exclude` (without "the"), or nil.
local function describe(objs, k, exclude)
  local o = objs[k]
  for _, set in ipairs(DESC_SETS) do
    local ok = true
    for _, a in ipairs(set) do if a == exclude then ok = false end end
    if ok then
      local n = 0
      for _, p in ipairs(objs) do
        local same = true
        for _, a in ipairs(set) do if p[a] ~= o[a] then same = false break end end
        if same then n = n + 1 end
      end
      if n == 1 then return phrase(o, set) end
    end
  end
  if exclude ~= "position" then
    local n = 0
    for _, p in ipairs(objs) do if p.position == o.position then n = n + 1 end end
    if n == 1 then return "object at the " .. o.position end
  end
  return nil
end

local function object_phrase(o) return string.format("a %s %s %s at the %s", o.size, o.color, o.shape, o.position) end

local function caption_of(list)
  if #list == 0 then return "there are no objects." end
  local parts = {}
  for i, o in ipairs(list) do parts[i] = object_phrase(o) end
  return table.concat(parts, ", ") .. "."
end

local function others(list, value)
  local r = {}
  for _, v in ipairs(list) do if v ~= value then r[#r + 1] = v end end
  return r
end

-- w:candidates(q) -> the candidate answers for a question table (its answer_type) or an answer type:
-- "color", "shape", "size", "count", "position", "yesno" (question types "relation" and "knowledge" map through
-- their answer_type).
function World:candidates(q)
  local t = type(q) == "table" and (q.answer_type or q.type) or q
  if t == "color" then return self.colors
  elseif t == "shape" then return self.shapes
  elseif t == "size" then return self.sizes
  elseif t == "count" then return self.counts
  elseif t == "position" then return M.POSITIONS
  elseif t == "yesno" or t == "relation" then return M.YESNO end
  error("pivot.world:candidates: unknown answer type " .. tostring(t), 2)
end

-- w:parse_caption(text) -> list of {size, color, shape, position} (nil, message if it does not parse)
function World:parse_caption(text)
  if text == "there are no objects." then return {} end
  local body = text:match("^(.*)%.$")
  if not body then return nil, "no final period" end
  local out = {}
  for part in (body .. ", "):gmatch("(.-), ") do
    local size, color, shape, pos = part:match("^a (%a+) (%a+) (%a+) at the (.+)$")
    if not size or not self.size_id[size] or not self.color_id[color] or not self.shape_id[shape] then
      return nil, "cannot parse '" .. part .. "'"
    end
    out[#out + 1] = {size = size, color = color, shape = shape, position = pos}
  end
  return out
end

---------------------------------------------------------------------------------------------------- samples
local Sample = {}
Sample.__index = Sample
M.Sample = Sample

local function u64(x)
  if type(x) == "cdata" then return x end
  if type(x) ~= "number" or x < 0 or x % 1 ~= 0 then
    error("pivot.world: seed must be a non-negative integer, got " .. tostring(x), 3)
  end
  return ffi.cast("uint64_t", x)
end

-- w:scene(seed, index) -> rgb, image, instance, objects (the C scene only, no texts)
function World:scene(seed, index)
  local S, maxo = self.S, self.grid * self.grid
  local rgb = ffi.new("uint8_t[?]", S * S * 3)
  local image = ffi.new("float[?]", 3 * S * S)
  local inst = ffi.new("int32_t[?]", S * S)
  local objs = ffi.new("pv_world_object[?]", maxo)
  local nobj = ffi.new("int[1]")
  if type(index) ~= "number" or index < 0 or index % 1 ~= 0 then
    error("pivot.world: index must be a non-negative integer, got " .. tostring(index), 2)
  end
  check(self.ctx, C.pv_world_scene(self._w, u64(seed), index, rgb, image, inst, objs, maxo, nobj), "pv_world_scene")
  local list = {}
  for k = 0, nobj[0] - 1 do
    local o = objs[k]
    list[k + 1] = {shape = self.shapes[o.shape + 1], color = self.colors[o.color + 1], size = self.sizes[o.size + 1],
      shape_id = o.shape, color_id = o.color, size_id = o.size, cell_x = o.cell_x, cell_y = o.cell_y, cx = o.cx,
      cy = o.cy, bbox = {o.x0, o.y0, o.x1, o.y1}, visible = o.visible_pixels,
      position = self:position_name(o.cell_x, o.cell_y)}
  end
  return rgb, image, inst, list
end

function World:sample(seed, index)
  local rgb, image, inst, objs = self:scene(seed, index)
  local s = setmetatable({world = self, seed = seed, index = index, S = self.S, image = image, rgb = rgb,
    instance = inst, objects = objs, n_objects = #objs,
    id = string.format("world-%s-%d", (tostring(seed):gsub("U?LL$", "")), index)},
    Sample)
  local rng = data.rng(seed, "world-text", index)

  -- image-level labels: the largest visible object
  local best
  for k, o in ipairs(objs) do
    if not best or o.visible > objs[best].visible then best = k end
  end
  s.label_object = best
  local bo = best and objs[best]
  s.labels = {shape = bo and bo.shape_id or -1, color = bo and bo.color_id or -1, size = bo and bo.size_id or -1,
    count = #objs, count_class = #objs - self.cfg.min_objects}

  -- caption, objects in reading order
  local order = {}
  for k = 1, #objs do order[k] = k end
  table.sort(order, function(a, b)
    local oa, ob = objs[a], objs[b]
    if oa.cell_y ~= ob.cell_y then return oa.cell_y < ob.cell_y end
    return oa.cell_x < ob.cell_x
  end)
  s.caption_order = order
  local ordered = {}
  for i, k in ipairs(order) do ordered[i] = objs[k] end
  s.caption = caption_of(ordered)

  -- questions
  local qs = {}
  local function add(q)
    q.vision = q.type ~= "knowledge"
    qs[#qs + 1] = q
  end
  local function eligible(exclude)
    local ks, ds = {}, {}
    for k = 1, #objs do
      local d = describe(objs, k, exclude)
      if d then
        ks[#ks + 1] = k
        ds[#ds + 1] = d
      end
    end
    return ks, ds
  end
  for _, attr in ipairs {"color", "shape", "size"} do
    local ks, ds = eligible(attr)
    if #ks > 0 then
      local j = 1 + rng:below(#ks)
      local k = ks[j]
      add({type = attr, answer_type = attr, attribute = attr, objects = {k},
        question = string.format("What %s is the %s?", attr, ds[j]), answer = objs[k][attr]})
    end
  end
  do -- count
    local variant = rng:below(3)
    if variant == 0 or #objs == 0 then
      local all = {}
      for k = 1, #objs do all[k] = k end
      add({type = "count", answer_type = "count", attribute = "count", objects = all,
        question = "How many objects are there?", answer = tostring(#objs)})
    else
      local attr = variant == 1 and "color" or "size"
      local value = rng:below(2) == 0 and objs[1 + rng:below(#objs)][attr] or rng:pick(self[attr .. "s"])
      local which = {}
      for k, o in ipairs(objs) do if o[attr] == value then which[#which + 1] = k end end
      add({type = "count", answer_type = "count", attribute = "count", objects = which, count_attribute = attr,
        count_value = value, question = string.format("How many %s objects are there?", value),
        answer = tostring(#which)})
    end
  end
  do -- position
    local ks, ds = eligible("position")
    if #ks > 0 then
      local j = 1 + rng:below(#ks)
      add({type = "position", answer_type = "position", attribute = "position", objects = {ks[j]},
        question = string.format("Where is the %s?", ds[j]), answer = objs[ks[j]].position})
    end
  end
  do -- relation
    local ks, ds = eligible("position")
    if #ks >= 2 then
      local i = 1 + rng:below(#ks)
      local j = 1 + rng:below(#ks - 1)
      if j >= i then j = j + 1 end
      local rel = rng:pick(M.RELATIONS)
      local a, b = objs[ks[i]], objs[ks[j]]
      local yes
      if rel == "left of" then yes = a.cell_x < b.cell_x
      elseif rel == "right of" then yes = a.cell_x > b.cell_x
      elseif rel == "above" then yes = a.cell_y < b.cell_y
      else yes = a.cell_y > b.cell_y end
      add({type = "relation", answer_type = "yesno", attribute = "position", relation = rel, objects = {ks[i], ks[j]},
        question = string.format("Is the %s %s the %s?", ds[i], rel, ds[j]), answer = yes and "yes" or "no"})
    end
  end
  do -- knowledge (control group)
    local kq = M.KNOWLEDGE[1 + rng:below(#M.KNOWLEDGE)]
    add({type = "knowledge", answer_type = kq.answer_type, attribute = kq.answer_type, objects = {},
      question = kq.question, answer = kq.answer})
  end
  s.questions = qs

  -- preference pairs: exactly one visual error in the rejected answer
  local pairs_ = {}
  if #objs > 0 then
    local k = order[1 + rng:below(#order)]
    local attr = rng:pick {"color", "shape", "size", "position"}
    local pool = attr == "position" and M.POSITIONS or self[attr .. "s"]
    local old = objs[k][attr]
    local new = rng:pick(others(pool, old))
    local rej = {}
    for i, o in ipairs(ordered) do
      local c = {size = o.size, color = o.color, shape = o.shape, position = o.position}
      if order[i] == k then c[attr] = new end
      rej[i] = c
    end
    local cho = {}
    for i, o in ipairs(ordered) do cho[i] = {size = o.size, color = o.color, shape = o.shape, position = o.position} end
    pairs_[#pairs_ + 1] = {type = "caption", attribute = attr, objects = {k}, prompt = "<image>\n" .. M.CAPTION_PROMPT,
      chosen = s.caption, rejected = caption_of(rej), chosen_value = old, rejected_value = new, chosen_objects = cho,
      rejected_objects = rej}
  end
  for _, q in ipairs(qs) do
    if q.vision then
      local wrong
      if q.type == "count" then
        local n = tonumber(q.answer)
        local down = n > 0 and (n >= self.max_count or rng:below(2) == 0)
        wrong = tostring(down and n - 1 or n + 1)
      elseif q.answer_type == "yesno" then
        wrong = q.answer == "yes" and "no" or "yes"
      else
        wrong = rng:pick(others(self:candidates(q), q.answer))
      end
      pairs_[#pairs_ + 1] = {type = q.type, attribute = q.attribute, objects = q.objects,
        prompt = "<image>\n" .. q.question, chosen = q.answer, rejected = wrong, chosen_value = q.answer,
        rejected_value = wrong}
    end
  end
  s.pairs = pairs_
  return s
end

-- s:class_map(attribute) -> int32_t[S*S]: 0 background, 1 + the attribute id ("shape" default, "color", "size")
-- of the pixel's object
function Sample:class_map(attribute)
  attribute = attribute or "shape"
  local key = attribute .. "_id"
  local lut = {}
  for k, o in ipairs(self.objects) do
    lut[k] = o[key]
    if lut[k] == nil then error("pivot.world: class_map: unknown attribute " .. tostring(attribute), 2) end
    lut[k] = lut[k] + 1
  end
  local n = self.S * self.S
  local out = ffi.new("int32_t[?]", n)
  local inst = self.instance
  for i = 0, n - 1 do
    local k = inst[i]
    out[i] = k == 0 and 0 or lut[k]
  end
  return out
end

-- s:patch_labels(patch, opts) -> see the header (opts: attribute, min_fraction)
function Sample:patch_labels(patch, opts)
  opts = opts or {}
  local attribute = opts.attribute or "shape"
  local r = data.patch_labels(self:class_map(attribute), self.S, patch, 1 + #self.world[attribute .. "s"],
    {min_fraction = opts.min_fraction})
  r.classes = self.world:classes(attribute)
  return r
end

-- w:classes(attribute) -> {"background", names...}: the class names of the segmentation probe (class c is
-- names[c + 1])
function World:classes(attribute)
  local names = {"background"}
  for _, v in ipairs(self[(attribute or "shape") .. "s"]) do names[#names + 1] = v end
  return names
end

---------------------------------------------------------------------------------------------------- vocabulary
-- w:vocabulary() -> sorted list of every word (letter run) the world's texts can contain
function World:vocabulary()
  local seen, list = {}, {}
  local function add(text)
    for wd in text:gmatch("%a+") do
      if not seen[wd] then
        seen[wd] = true
        list[#list + 1] = wd
      end
    end
  end
  for _, p in ipairs(PHRASES) do add(p) end
  for _, l in ipairs {self.shapes, self.colors, self.sizes, M.POSITIONS, M.RELATIONS, M.YESNO} do
    for _, v in ipairs(l) do add(v) end
  end
  for _, k in ipairs(M.KNOWLEDGE) do add(k.question) add(k.answer) end
  table.sort(list)
  return list
end

---------------------------------------------------------------------------------------------------- export
-- w:write_dataset(dir, seed, first, count, opts) -> {dpo = path, sft = path, images = folder, n_pairs, n_sft}:
-- images/<id>.png, dpo.jsonl (one line per preference pair, the MMPR format), sft.jsonl (caption and questions as
-- LLaVA conversations). The image paths in the JSONL are relative to dir. opts.pairs = false skips dpo.jsonl lines.
function World:write_dataset(dir, seed, first, count, opts)
  opts = opts or {}
  data.mkdir(dir .. "/images")
  local dpo, sft = {}, {}
  for index = first, first + count - 1 do
    local s = self:sample(seed, index)
    local rel = "images/" .. s.id .. ".png"
    data.write_png(self.ctx, dir .. "/" .. rel, self.S, self.S, 3, s.rgb)
    for j, p in ipairs(s.pairs) do
      dpo[#dpo + 1] = {id = string.format("%s-p%d", s.id, j), prompt = p.prompt, chosen = p.chosen,
        rejected = p.rejected, image = rel, type = p.type, attribute = p.attribute}
    end
    sft[#sft + 1] = {id = s.id .. "-caption", image = rel, conversations = {
      {from = "human", value = "<image>\n" .. M.CAPTION_PROMPT}, {from = "gpt", value = s.caption}}}
    for j, q in ipairs(s.questions) do
      sft[#sft + 1] = {id = string.format("%s-q%d", s.id, j), image = rel, type = q.type, conversations = {
        {from = "human", value = "<image>\n" .. q.question}, {from = "gpt", value = q.answer}}}
    end
  end
  local r = {images = dir .. "/images", sft = dir .. "/sft.jsonl", n_sft = #sft, n_pairs = #dpo}
  data.write_jsonl(r.sft, sft)
  if opts.pairs ~= false then
    r.dpo = dir .. "/dpo.jsonl"
    data.write_jsonl(r.dpo, dpo)
  end
  return r
end

return M
