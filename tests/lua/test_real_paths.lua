-- Tests of the two real-data paths of the study with tiny random checkpoints, PNG images and JSONL files written to
-- a temporary folder:
--  * gradient maps in the evaluation mode (pivot.pipeline.eval_checkpoints with gradmap_data, i.e.
--    `recipes/pivot.lua --eval-encoders base=..,sft=..,dpo=.. --gradmap-data FILE`): the patch weights of a bbox and
--    of a mask (covered fractions, checked by hand), the report, panels and raw metrics are written, every focus is
--    finite in [0, 1] and equals the weighted share recomputed from the map, and bad JSONL lines raise errors that
--    name the file, the line and the field;
--  * the PIVOT transfer (`recipes/stage1.lua --vision-from CKPT`): the donor's tower is loaded (pivot checkpoint and
--    HF SiglipVisionModel export), stays bit-identical through stage 1a and 1b while the projector and LLM train;
--    with --freeze-vision false it trains; a donor of another shape is refused.
-- Run by ctest as `pivot run tests/lua/test_real_paths.lua` (from the repository root).
local pv = require "pivot"
local ffi = pv.ffi
local study = require "pivot.study"
local pipeline = require "pivot.pipeline"
local gradmap = require "pivot.eval.gradmap"
local data = require "pivot.data"
local json = require "pivot.json"
local hf = require "pivot.hf"
local testing = require "pivot.testing"

local T = testing.suite("test_real_paths")
local function case(name, fn) return T:case(name, fn) end
local TMP = testing.tmpdir("real_paths")

local ctx0 = pv.context{threads = 1, seed = 3}
local env0 = study.world(ctx0, {out_dir = TMP})
local CFG = study.mini_config{preset = "tiny", vocab_size = env0.vocab_size}
local S = CFG.vision.image_size
local GRID = S / CFG.vision.patch_size

-- three tiny checkpoints with different random weights (the same architecture)
local DIRS = {}
for i, name in ipairs {"base", "sft", "dpo"} do
  local ctx = pv.context{threads = 1, seed = 10 + i}
  DIRS[name] = study.save_checkpoint(ctx, study.model(ctx, CFG), TMP .. "/" .. name,
    {tokenizer_path = env0.tokenizer_path, extra = {world = env0.world_cfg}})
end

-- images of W x H (not square, so the bbox -> patch mapping is tested on both axes): grey with a red rectangle
local W, H = 48, 40
local function write_image(path, x0, y0, x1, y1)
  local b = ffi.new("uint8_t[?]", W * H * 3)
  for y = 0, H - 1 do
    for x = 0, W - 1 do
      local i = (y * W + x) * 3
      local inside = x >= x0 and x < x1 and y >= y0 and y < y1
      b[i], b[i + 1], b[i + 2] = inside and 220 or 90, inside and 30 or 90, inside and 30 or 90
    end
  end
  data.write_png(ctx0, path, W, H, 3, b)
end
local IMG = TMP .. "/images"
data.mkdir(IMG)
write_image(IMG .. "/a.png", 6, 5, 18, 15)
write_image(IMG .. "/b.png", 0, 0, 24, 20)
write_image(IMG .. "/c.png", 30, 20, 48, 40)
-- mask of b.png: nonzero on the top-left quadrant [0, 24) x [0, 20)
do
  local m = ffi.new("uint8_t[?]", W * H)
  for y = 0, 19 do for x = 0, 23 do m[y * W + x] = 7 end end
  data.write_png(ctx0, IMG .. "/b_mask.png", W, H, 1, m)
end

local function write_lines(path, lines)
  local f = assert(io.open(path, "wb"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  return path
end
local GOOD = write_lines(TMP .. "/gradmap.jsonl", {
  json.encode({id = "bbox", image = "a.png", question = "What color is the square?", answer = "red",
    rejected = "blue", bbox = {6, 5, 18, 15}}),
  json.encode({id = "mask", image = "b.png", prompt = "<image>\nWhat color is the square?", chosen = "red",
    rejected = "green", mask = "b_mask.png"}),
  "",
  json.encode({image = "c.png", question = "What color is the square?", answer = "red", rejected = "blue",
    bbox = {30, 20, 48, 40}}),
  json.encode({id = "noregion", image = "c.png", question = "What color is the square?", answer = "red",
    rejected = "yellow"}),
})

local function in01(v, what)
  assert(type(v) == "number" and v == v and v >= 0 and v <= 1, string.format("%s = %s, not in [0, 1]", what,
    tostring(v)))
end

case("read_jsonl and region weights: bbox -> covered fractions, mask -> nonzero share per patch", function()
  local items = gradmap.read_jsonl(ctx0, GOOD, {image_root = IMG})
  assert(#items == 4, "4 items, got " .. #items)
  assert(items[1].width == W and items[1].height == H and items[1].line == 1)
  assert(items[2].question == "What color is the square?" and items[2].answer == "red", "prompt/chosen form")
  assert(items[3].line == 4 and items[3].id:match("gradmap%.jsonl:4$"), "default id names the line: " .. items[3].id)
  assert(#gradmap.read_jsonl(ctx0, GOOD, {image_root = IMG, limit = 2}) == 2, "limit")
  -- a patch covers 6 x 5 pixels of the 48 x 40 image: [6, 18) x [5, 15) covers patches (1..2, 1..2) exactly
  local w = gradmap.region_weights(ctx0, items[1], S, GRID)
  local sum = 0
  for j = 0, GRID - 1 do
    for i = 0, GRID - 1 do
      local want = (i >= 1 and i <= 2 and j >= 1 and j <= 2) and 1 or 0
      testing.near(w[j * GRID + i + 1], want, 1e-12, string.format("bbox weight of patch (%d, %d)", i, j))
      sum = sum + w[j * GRID + i + 1]
    end
  end
  assert(sum == 4)
  -- a half-covered patch counts one half
  local half = {bbox = {6, 5, 9, 10}, width = W, height = H}
  local wh = gradmap.region_weights(ctx0, half, S, GRID)
  testing.near(wh[1 * GRID + 1 + 1], 0.5, 1e-12, "half-covered patch")
  testing.near(wh[1 * GRID + 2 + 1], 0, 1e-12, "uncovered patch")
  -- the mask's top-left quadrant: the 4 x 4 top-left patches of the 8 x 8 grid
  local wm = gradmap.region_weights(ctx0, items[2], S, GRID)
  for j = 0, GRID - 1 do
    for i = 0, GRID - 1 do
      testing.near(wm[j * GRID + i + 1], (i < GRID / 2 and j < GRID / 2) and 1 or 0, 1e-12,
        string.format("mask weight of patch (%d, %d)", i, j))
    end
  end
  assert(gradmap.region_weights(ctx0, items[4], S, GRID) == nil, "no region -> no weights")
  local f, u = gradmap.weighted_focus({1, 3, 0, 0}, {1, 0.5, 0, 0})
  testing.near(f, 2.5 / 4, 1e-12, "weighted focus")
  testing.near(u, 1.5 / 4, 1e-12, "uniform share")
end)

case("bad JSONL lines: errors name the file, the line and the field", function()
  local function bad(name, lines, ...)
    local p = write_lines(TMP .. "/" .. name .. ".jsonl", lines)
    return testing.raises(function() gradmap.read_jsonl(ctx0, p, {image_root = IMG}) end, p, ...)
  end
  local ok1 = json.encode({image = "a.png", question = "q", answer = "red", rejected = "blue"})
  bad("badjson", {ok1, "{\"image\": \"a.png\", \"question\": "}, ":2:", "invalid JSON")
  bad("noimage", {ok1, ok1, json.encode({image = "missing.png", question = "q", answer = "a", rejected = "b"})}, ":3:",
    "field 'image'", "missing.png")
  bad("imagefield", {json.encode({question = "q", answer = "a", rejected = "b"})}, ":1:", "field 'image' missing")
  bad("bboxout", {json.encode({image = "a.png", question = "q", answer = "a", rejected = "b",
    bbox = {0, 0, 49, 10}})}, ":1:", "field 'bbox'", "48x40")
  bad("bboxorder", {ok1, json.encode({image = "a.png", question = "q", answer = "a", rejected = "b",
    bbox = {10, 0, 5, 10}})}, ":2:", "field 'bbox'", "x0 < x1")
  bad("bboxshape", {json.encode({image = "a.png", question = "q", answer = "a", rejected = "b", bbox = {1, 2, 3}})},
    ":1:", "field 'bbox'")
  bad("maskmissing", {json.encode({image = "a.png", question = "q", answer = "a", rejected = "b",
    mask = "nope.png"})}, ":1:", "field 'mask'", "nope.png")
  bad("norejected", {json.encode({image = "a.png", question = "q", answer = "a"})}, ":1:", "field 'rejected'")
  -- through the evaluation mode: the JSONL is checked before any model is loaded
  local p = write_lines(TMP .. "/evalbad.jsonl", {ok1, ok1, ok1, "not json"})
  testing.raises(function()
    pipeline.eval_checkpoints({encoders = "base=" .. DIRS.base .. ",sft=" .. DIRS.sft, gradmap_data = p,
      gradmap_image_root = IMG, out = TMP .. "/evalbad", threads = 1})
  end, p .. ":4:")
end)

case("eval_checkpoints --gradmap-data: report, panels, raw metrics, focus in [0, 1] per arm", function()
  local out = TMP .. "/eval"
  -- dpo listed before base: base still runs first (its log-probs are the DPO maps' reference)
  local r = pipeline.eval_checkpoints({encoders = string.format("dpo=%s,sft=%s,base=%s", DIRS.dpo, DIRS.sft,
    DIRS.base), gradmap_data = GOOD, gradmap_image_root = IMG, gradmap_limit = 4, out = out, threads = 1})
  local f = assert(io.open(out .. "/report.md", "rb"), "no report.md")
  local md = f:read("*a")
  f:close()
  assert(md:find("Gradient focus on the asked-about region", 1, true), "report lacks the focus table")
  assert(md:find("grad focus", 1, true), "report table lacks the grad focus column")
  -- panels: one per item, PNG files linked from the report
  assert(#r.panels == 4, "4 panels, got " .. #r.panels)
  for i, p in ipairs(r.panels) do
    local pf = assert(io.open(p.path, "rb"), "panel missing: " .. p.path)
    local sig = pf:read(8)
    pf:close()
    assert(sig == "\137PNG\r\n\26\n", "not a PNG: " .. p.path)
    assert(md:find(string.format("panels/gradmap_%02d.png", i), 1, true), "panel not linked in the report")
  end
  -- the focus of every arm, and per item: finite in [0, 1], equal to the weighted share of the map
  for _, tag in ipairs {"sft_start", "dpo_start", "sft_end", "dpo_end"} do
    in01(r.focus[tag], "focus " .. tag)
    local maps = r.gradmaps[tag]
    assert(#maps == 4, tag .. ": 4 maps")
    for i, m in ipairs(maps) do
      assert(#m.map == GRID * GRID, "map size")
      local total = 0
      for p = 1, #m.map do
        assert(m.map[p] >= 0 and m.map[p] == m.map[p], "map value")
        total = total + m.map[p]
      end
      assert(total > 0, tag .. ": an all-zero gradient map")
      if i <= 3 then
        in01(m.focus, tag .. " item " .. i)
        in01(m.uniform, tag .. " uniform " .. i)
        local w = gradmap.region_weights(ctx0, r.items[i], S, GRID)
        local inside = 0
        for p = 1, #m.map do inside = inside + w[p] * m.map[p] end
        testing.near(m.focus, inside / total, 1e-9, tag .. " focus of item " .. i)
      else
        assert(m.focus == nil, "an item without a region has no focus")
      end
    end
  end
  testing.near(r.focus.uniform, (4 / 64 + 16 / 64 + 12 / 64) / 3, 1e-9, "uniform share")
  -- the DPO map at the dpo checkpoint uses the base checkpoint's log-probs: its loss differs from log 2, while the
  -- DPO map at the base weights (policy = reference) has loss log 2
  for i = 1, 4 do
    testing.near(r.gradmaps.dpo_start[i].loss, math.log(2), 1e-5, "DPO loss at policy = reference")
  end
  local moved = false
  for i = 1, 4 do if math.abs(r.gradmaps.dpo_end[i].loss - math.log(2)) > 1e-4 then moved = true end end
  assert(moved, "the DPO maps at the dpo checkpoint ignore the base reference")
  -- the table and the raw metrics
  local col = {}
  for _, row in ipairs(r.rows) do col[row[1]] = row[5] end
  assert(col.sft == r.focus.sft_end and col.dpo == r.focus.dpo_end and col.base == "-", "grad focus column")
  local seen = {}
  for line in io.lines(out .. "/metrics_raw.jsonl") do
    local m = json.decode(line)
    if m.metric and m.value then seen[m.encoder .. ":" .. m.metric] = m.value end
  end
  for _, k in ipairs {"sft:focus/start", "dpo:focus/start", "sft:focus/end", "dpo:focus/end", "base:focus/uniform"} do
    in01(seen[k], "metrics_raw " .. k)
  end
  testing.near(seen["dpo:focus/end"], r.focus.dpo_end, 1e-9, "raw dpo focus/end")
end)

---------------------------------------------------------------------------------------------------- transfer
local function vision_values(model)
  local out = {}
  for _, p in ipairs(model.vision:parameters()) do
    local n = p.var.numel
    local buf = p.var:read_raw()
    local copy = ffi.new("float[?]", n)
    ffi.copy(copy, buf, n * 4)
    out[#out + 1] = {name = p.name:match("vision%.(.*)$"), buf = copy, n = n}
  end
  return out
end
local function module_values(m)
  local out = {}
  for _, p in ipairs(m:parameters()) do
    local n, buf = p.var.numel, p.var:read_raw()
    local copy = ffi.new("float[?]", n)
    ffi.copy(copy, buf, n * 4)
    out[#out + 1] = {buf = copy, n = n}
  end
  return out
end
local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do
    if a[i].n ~= b[i].n then return false end
    if ffi.C.memcmp(a[i].buf, b[i].buf, a[i].n * 4) ~= 0 then return false end
  end
  return true
end
pcall(ffi.cdef, "int memcmp(const void *a, const void *b, size_t n);")

local function load(dir, prefix)
  local ctx = pv.context{threads = 1, seed = 1}
  return (study.load_model(ctx, dir, {prefix = prefix})), ctx
end

case("load_vision: a pivot checkpoint and an HF SiglipVisionModel export give the donor's tower; shapes checked", function()
  local donor, dctx = load(DIRS.dpo, "donor")
  local want = vision_values(donor)
  local m, ctx = load(DIRS.base, "host")
  assert(not same(vision_values(m), want), "the host starts with the donor's tower")
  local proj = module_values(m.projector)
  local r = study.load_vision(ctx, m, DIRS.dpo)
  assert(r.kind == "pivot" and r.loaded == #want)
  assert(same(vision_values(m), want), "pivot checkpoint: the tower differs from the donor's")
  assert(same(module_values(m.projector), proj), "load_vision touched the projector")
  -- HF export of the donor tower
  hf.save_vision_tower(dctx, donor.vision, TMP .. "/dpo_vision")
  local m2, ctx2 = load(DIRS.sft, "host2")
  study.load_vision(ctx2, m2, TMP .. "/dpo_vision")
  assert(same(vision_values(m2), want), "HF export: the tower differs from the donor's")
  -- another shape: refused before anything is loaded
  local ctx3 = pv.context{threads = 1, seed = 5}
  local other = study.mini_config{preset = "tiny", vocab_size = env0.vocab_size, image_size = 16}
  study.save_checkpoint(ctx3, study.model(ctx3, other), TMP .. "/other", {tokenizer_path = env0.tokenizer_path})
  local m3, ctx4 = load(DIRS.base, "host3")
  testing.raises(function() study.load_vision(ctx4, m3, TMP .. "/other") end, "image_size", TMP .. "/other")
end)

local function run_stage1(out, extra)
  local o = {model = DIRS.base, vision_from = DIRS.dpo, steps_1a = 2, steps_1b = 2, batch_size = 4, images = 8,
    threads = 1, seed = 1, print_every = 0}
  for k, v in pairs(extra or {}) do o[k] = v end
  local f = assert(loadfile(pv.source_dir .. "/recipes/stage1.lua"))
  f(o)
  return out
end

case("stage1 --vision-from: the donor's tower stays frozen in 1a and 1b; projector and LLM train", function()
  local out = run_stage1(TMP .. "/xfer", {out = TMP .. "/xfer"})
  local donor = load(DIRS.dpo, "d2")
  local base = load(DIRS.base, "b2")
  local got = load(out, "x2")
  assert(same(vision_values(got), vision_values(donor)), "the transferred tower changed during stage 1")
  assert(not same(module_values(got.projector), module_values(base.projector)), "the projector did not train")
  assert(not same(module_values(got.llm), module_values(base.llm)), "the LLM did not train in 1b")
  local f = assert(io.open(out .. "/config.json", "rb"))
  local cfg = json.decode(f:read("*a"))
  f:close()
  assert(cfg.vision_from == DIRS.dpo and cfg.freeze_vision == true, "config.json does not record the transfer")
  -- --freeze-vision false: the same transfer, the tower trains in 1b
  local out2 = run_stage1(TMP .. "/xfer_unfrozen", {out = TMP .. "/xfer_unfrozen", freeze_vision = "false"})
  local got2 = load(out2, "x3")
  assert(not same(vision_values(got2), vision_values(donor)), "--freeze-vision false: the tower did not train")
  -- stage 0 would train the frozen tower: refused
  testing.raises(function() run_stage1(TMP .. "/xfer_s0", {out = TMP .. "/xfer_s0", stage0_steps = 2}) end,
    "stage0")
end)

T:finish()
