-- pivot.hf loading and export with the SigLIP fixture (../shared/fixtures/hf/siglip): sharded, bf16 and f16
-- checkpoints, a full SiglipModel layout, error messages (missing / unexpected tensor, shape against
-- config.json, config field type), towers that drop layers, and save_vision_tower round trips.
local pv = require "pivot"
local hf = require "pivot.hf"
local json = require "pivot.json"
local siglip = require "pivot.models.siglip"
local ffi = require "ffi"

local FIX = "../shared/fixtures/hf/siglip"
local T = require("pivot.testing").suite("hf_load")
local function case(name, fn) T:case(name, fn) end

for _, f in ipairs {"config.json", "model.safetensors", "golden.safetensors"} do
  local h = io.open(FIX .. "/" .. f, "rb")
  if not h then error("fixture missing: " .. FIX .. "/" .. f .. " (tests must not skip)") end
  h:close()
end

-- a temporary directory, removed at the end
local TMP = os.tmpname()
os.remove(TMP)
TMP = TMP .. ".hfload"
assert(os.execute("mkdir -p " .. hf.shell_quote(TMP)) == 0 or hf.is_dir(TMP), "cannot create " .. TMP)
local function tdir(name)
  local d = TMP .. "/" .. name
  os.execute("mkdir -p " .. hf.shell_quote(d))
  return d
end

local function read_text(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end
local function write_text(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
local CONFIG_TEXT = read_text(FIX .. "/config.json")

-- the fixture's tensors as vars (bare names) in a source context
local src = pv.context()
local src_ck = hf.open(src, FIX)
local NAMES = src_ck:names()
local SRC = {}
for _, n in ipairs(NAMES) do
  local info = src_ck:info(n)
  SRC[n] = src:var("src." .. n, info.shape)
  src_ck:load_var(n, SRC[n])
end

-- saves a checkpoint of the listed bare names (renamed by rename(n) when given)
local function save(path, names, opts)
  opts = opts or {}
  local vars, out = {}, {}
  for i, n in ipairs(names) do
    vars[i] = opts.vars and opts.vars[n] or SRC[n]
    out[i] = opts.rename and opts.rename(n) or n
  end
  src:save_safetensors(path, vars, {names = out, dtype = opts.dtype, metadata = {format = "pt"}})
end

local function without(list, drop)
  local r = {}
  for _, n in ipairs(list) do if n ~= drop then r[#r + 1] = n end end
  return r
end

-- the golden pixel values
local golden = src:open_safetensors(FIX .. "/golden.safetensors")
local PIX, PIX_N = golden:read("pixel_values", "f32")
local PIX_SHAPE = golden:info("pixel_values").shape

-- builds a tower from dir (config.json + checkpoint) in a fresh context and runs it on the golden pixels;
-- returns the outputs as double arrays, the tower and the context
local function run_dir(dir, opts, ckpath)
  local ctx = pv.context{threads = 2}
  local tower = siglip.new(ctx, "vision", hf.read_config(dir), opts)
  local ck = hf.open(ctx, ckpath or dir)
  hf.load_vision_tower(ck, tower)
  ck:close()
  local g = ctx:graph()
  local pix = g:input("pixel_values", PIX_SHAPE)
  local out = tower:forward(g, pix)
  local res = {}
  local keys = {"features", "last_hidden_state", "pooler_output"}
  for _, k in ipairs(keys) do if out[k] then out[k]:mark_output() end end
  local plan = g:compile()
  plan:write(pix, PIX, "f32")
  plan:run()
  for _, k in ipairs(keys) do
    if out[k] then
      local buf, n = plan:read_raw(out[k], "f64")
      res[k] = {buf, n}
    end
  end
  return res, tower, ctx
end

local function rel(a, b)
  assert(a[2] == b[2], "sizes differ")
  local d2, r2 = 0, 0
  for i = 0, a[2] - 1 do
    d2 = d2 + (a[1][i] - b[1][i]) ^ 2
    r2 = r2 + b[1][i] ^ 2
  end
  return math.sqrt(d2 / r2)
end

local function expect_error(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error")
  err = tostring(err)
  for _, s in ipairs {...} do
    assert(err:find(s, 1, true), "error message lacks '" .. s .. "': " .. err)
  end
  return err
end

local REF = run_dir(FIX)

case("fixture loads and matches golden last_hidden_state", function()
  local buf, n = golden:read("last_hidden_state", "f64")
  local e = rel(REF.last_hidden_state, {buf, n})
  assert(e < 1e-5, "rel err " .. e)
end)

case("sharded checkpoint (index + two shards)", function()
  local d = tdir("sharded")
  write_text(d .. "/config.json", CONFIG_TEXT)
  local half = math.floor(#NAMES / 2)
  local a, b, wm = {}, {}, {}
  for i, n in ipairs(NAMES) do
    if i <= half then
      a[#a + 1] = n
      wm[n] = "model-00001-of-00002.safetensors"
    else
      b[#b + 1] = n
      wm[n] = "model-00002-of-00002.safetensors"
    end
  end
  save(d .. "/model-00001-of-00002.safetensors", a)
  save(d .. "/model-00002-of-00002.safetensors", b)
  write_text(d .. "/model.safetensors.index.json", json.encode({metadata = {total_size = 0}, weight_map = wm}))
  local ck = hf.open(pv.context(), d)
  assert(#ck.files == 2, "expected two shards")
  local names = ck:names()
  assert(#names == #NAMES and names[1] == NAMES[1] and names[#names] == NAMES[#NAMES], "names differ")
  assert(ck:has("head.probe") and not ck:has("nope"))
  local info = ck:info("encoder.layers.1.mlp.fc1.weight")
  assert(info.dtype == "f32" and info.shape[1] == 128 and info.shape[2] == 64)
  ck:close()
  local res = run_dir(d)
  for _, k in ipairs {"last_hidden_state", "pooler_output"} do
    local e = rel(res[k], REF[k])
    assert(e == 0, k .. " differs: " .. e)
  end
end)

for _, dt in ipairs {{"bf16", 2 ^ -8, 1e-2}, {"f16", 2 ^ -11, 2e-3}} do
  case(dt[1] .. " checkpoint: values within rounding, forward close", function()
    local d = tdir(dt[1])
    write_text(d .. "/config.json", CONFIG_TEXT)
    save(d .. "/model.safetensors", NAMES, {dtype = dt[1]})
    local ctx = pv.context()
    local ck = hf.open(ctx, d)
    for _, n in ipairs(NAMES) do
      local info = ck:info(n)
      assert(info.dtype == dt[1], n .. ": stored as " .. info.dtype)
      local v = ctx:var(n, info.shape)
      ck:load_var(n, v)
      local got = v:read_raw("f64")
      local ref = SRC[n]:read_raw("f64")
      for i = 0, v.numel - 1 do
        local r = ref[i]
        if math.abs(got[i] - r) > math.abs(r) * dt[2] + 6e-8 then
          error(string.format("%s[%d]: %.9g vs %.9g", n, i, got[i], r))
        end
      end
    end
    ck:close()
    local res = run_dir(d)
    for _, k in ipairs {"last_hidden_state", "pooler_output"} do
      local e = rel(res[k], REF[k])
      assert(e < dt[3], k .. ": rel err " .. e)
      assert(e > 0, k .. ": identical to f32, so the file was not reduced")
    end
  end)
end

case("full SiglipModel layout (vision_model.*, text tower and logit_* skipped)", function()
  local d = tdir("siglip_model")
  write_text(d .. "/config.json", CONFIG_TEXT)
  local names = {}
  for _, n in ipairs(NAMES) do names[#names + 1] = n end
  names[#names + 1] = "text_model.embeddings.token_embedding.weight"
  names[#names + 1] = "logit_scale"
  names[#names + 1] = "logit_bias"
  local vars = {["text_model.embeddings.token_embedding.weight"] = SRC["encoder.layers.0.mlp.fc1.weight"],
    logit_scale = SRC["head.probe"], logit_bias = SRC["head.probe"]}
  save(d .. "/model.safetensors", names, {vars = vars, rename = function(n)
    if n:match("^text_model") or n:match("^logit") then return n end
    return "vision_model." .. n
  end})
  local res = run_dir(d)
  assert(rel(res.pooler_output, REF.pooler_output) == 0)
  local map = hf.maps.siglip_vision("v")
  assert(map("vision_model.head.probe") == "v.head.probe" and map("head.probe") == "v.head.probe")
  assert(map("text_model.x") == false and map("logit_scale") == false and map("foo.bar") == nil)
end)

case("missing tensor names the tensor", function()
  local d = tdir("missing")
  write_text(d .. "/config.json", CONFIG_TEXT)
  save(d .. "/model.safetensors", without(NAMES, "encoder.layers.1.mlp.fc1.weight"))
  expect_error(function() run_dir(d) end, "missing tensor 'vision.encoder.layers.1.mlp.fc1.weight'", d)
end)

case("unexpected tensor names the tensor (strict), ignored when not strict", function()
  local d = tdir("unexpected")
  write_text(d .. "/config.json", CONFIG_TEXT)
  local names = {}
  for _, n in ipairs(NAMES) do names[#names + 1] = n end
  names[#names + 1] = "encoder.layers.0.self_attn.extra.weight"
  save(d .. "/model.safetensors", names, {vars = {["encoder.layers.0.self_attn.extra.weight"] = SRC["head.probe"]}})
  expect_error(function() run_dir(d) end, "unexpected tensor 'encoder.layers.0.self_attn.extra.weight'")
  -- a layer-2 tensor with a 2-layer config is unexpected too
  local d2 = tdir("unexpected_layer")
  write_text(d2 .. "/config.json", CONFIG_TEXT)
  save(d2 .. "/model.safetensors", names, {vars = {["encoder.layers.0.self_attn.extra.weight"] = SRC["head.probe"]},
    rename = function(n) return n:gsub("self_attn%.extra", "x"):gsub("layers%.0%.x", "layers.2.mlp.fc1") end})
  expect_error(function() run_dir(d2) end, "unexpected tensor 'encoder.layers.2.mlp.fc1.weight'")
  local ctx = pv.context()
  local tower = siglip.new(ctx, "vision", hf.read_config(d), {})
  local r = hf.load_vision_tower(hf.open(ctx, d), tower, {strict = false})
  assert(r.loaded == #NAMES and #r.unexpected == 1, "loaded " .. r.loaded)
end)

case("shape that disagrees with config.json names tensor and shapes", function()
  local d = tdir("badshape")
  write_text(d .. "/config.json", (CONFIG_TEXT:gsub('"intermediate_size": 128', '"intermediate_size": 96')))
  save(d .. "/model.safetensors", NAMES)
  expect_error(function() run_dir(d) end, "tensor 'encoder.layers.0.mlp.fc1.", "has shape [128", "shape [96",
    "config.json")
end)

case("config.json field of the wrong type names the field", function()
  local d = tdir("badtype")
  write_text(d .. "/config.json", (CONFIG_TEXT:gsub('"hidden_size": 64', '"hidden_size": "64"')))
  save(d .. "/model.safetensors", NAMES)
  expect_error(function() run_dir(d) end, "config.json", "field 'hidden_size' must be", "got string")
  local cfg = hf.read_config(d)
  expect_error(function() hf.get(cfg, "hidden_size", "number") end, "field 'hidden_size' must be a number, got string")
  expect_error(function() hf.get(cfg, "no_such_field", "number") end, "no_such_field")
  assert(hf.get(cfg, "no_such_field", "number", 7) == 7)
  assert(hf.rope_theta({rope_theta = 5}) == 5 and hf.rope_theta({rope_parameters = {rope_theta = 1e6}}) == 1e6)
  expect_error(function() hf.read_config(TMP .. "/nowhere") end, "config.json", "nowhere")
end)

case("feature_layer -2: fewer layers created, checkpoint extras ignored, features = hidden_states.1", function()
  local ctx = pv.context()
  local res, tower = run_dir(FIX, {feature_layer = -2})
  assert(tower.num_layers == 1 and not tower.has_head and not tower.has_post_layernorm)
  assert(not ctx:find_var("vision.encoder.layers.1.mlp.fc1.weight"))
  local buf, n = golden:read("hidden_states.1", "f64")
  local e = rel(res.features, {buf, n})
  assert(e < 1e-5, "features err " .. e)
  assert(res.last_hidden_state == nil and res.pooler_output == nil)
  local res2, tower2, ctx2 = run_dir(FIX, {feature_layer = -2, keep_all = true})
  assert(tower2.num_layers == 2 and tower2.has_head and tower2.has_post_layernorm)
  assert(ctx2:find_var("vision.head.probe") and #tower2:parameters() == #NAMES)
  assert(rel(res2.features, res.features) == 0)
  expect_error(function() siglip.new(pv.context(), "v", hf.read_config(FIX), {feature_layer = 3}) end,
    "feature_layer")
end)

case("save_vision_tower round trip (full tower, changed weights)", function()
  local d = tdir("export_full")
  local ctx = pv.context{seed = 7}
  local tower = siglip.new(ctx, "vision", hf.read_config(FIX), {})
  hf.load_vision_tower(hf.open(ctx, FIX), tower)
  -- change a few weights so the export is not the fixture's file
  ctx:find_var("vision.encoder.layers.1.mlp.fc2.weight"):init_normal(0, 0.05)
  ctx:find_var("vision.head.probe"):init_normal(0, 1)
  hf.save_vision_tower(ctx, tower, d)
  local cfg = hf.read_config(d)
  assert(cfg.model_type == "siglip_vision_model" and cfg.architectures[1] == "SiglipVisionModel")
  assert(cfg.num_hidden_layers == 2 and cfg.hidden_size == 64 and cfg.image_size == 32 and cfg.patch_size == 8)
  assert(cfg.hidden_act == "gelu_pytorch_tanh" and cfg.layer_norm_eps == 1e-6 and cfg.vision_use_head == true)
  local st = ctx:open_safetensors(d .. "/model.safetensors")
  assert(st:metadata() == '{"format":"pt"}', tostring(st:metadata()))
  local names = st:names()
  table.sort(names)
  assert(#names == #NAMES, #names .. " names")
  for i = 1, #NAMES do assert(names[i] == NAMES[i], names[i] .. " vs " .. NAMES[i]) end
  st:close()
  -- reload and compare with the in-memory tower
  local g = ctx:graph()
  local pix = g:input("pixel_values", PIX_SHAPE)
  local out = tower:forward(g, pix)
  out.last_hidden_state:mark_output()
  out.pooler_output:mark_output()
  local plan = g:compile()
  plan:write(pix, PIX, "f32")
  plan:run()
  local res = run_dir(d)
  for _, k in ipairs {"last_hidden_state", "pooler_output"} do
    local buf, n = plan:read_raw(out[k], "f64")
    assert(rel(res[k], {buf, n}) == 0, k .. " differs after reload")
  end
  assert(rel(res.pooler_output, REF.pooler_output) > 1e-3, "weights were not changed")
end)

case("save_vision_tower of a truncated tower (feature_layer -2, no head)", function()
  local d = tdir("export_trunc")
  local res, tower, ctx = run_dir(FIX, {feature_layer = -2})
  hf.save_vision_tower(ctx, tower, d)
  local cfg = hf.read_config(d)
  assert(cfg.num_hidden_layers == 1 and cfg.vision_use_head == false)
  local ck = hf.open(ctx, d)
  assert(ck:has("post_layernorm.weight") and not ck:has("head.probe") and not ck:has("encoder.layers.1.mlp.fc1.bias"))
  ck:close()
  local res2 = run_dir(d, {})
  assert(res2.pooler_output == nil)
  -- the full model of the exported config: its last hidden state (pre-LN) is our features
  local res3 = run_dir(d, {with_post_layernorm = false})
  assert(rel(res3.features, res.features) == 0, "features differ after export")
end)

case("name maps: qwen2 and llava_ov", function()
  local q = hf.maps.qwen2("llm")
  assert(q("model.layers.0.mlp.up_proj.weight") == "llm.model.layers.0.mlp.up_proj.weight")
  assert(q("lm_head.weight") == "llm.lm_head.weight" and q("visual.x") == nil)
  local m = hf.maps.llava_ov({vision = "vision", projector = "projector", llm = "llm"})
  assert(m("model.vision_tower.vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight") ==
    "vision.encoder.layers.3.mlp.fc1.weight")
  assert(m("model.vision_tower.vision_tower.vision_model.post_layernorm.bias") == "vision.post_layernorm.bias")
  assert(m("model.mm_projector.0.weight") == "projector.0.weight" and m("model.mm_projector.2.bias") == "projector.2.bias")
  assert(m("model.mm_projector.1.weight") == nil)
  assert(m("model.layers.0.self_attn.q_proj.bias") == "llm.model.layers.0.self_attn.q_proj.bias")
  assert(m("model.embed_tokens.weight") == "llm.model.embed_tokens.weight" and m("model.norm.weight") == "llm.model.norm.weight")
  assert(m("lm_head.weight") == "llm.lm_head.weight")
  assert(m("model.image_newline") == nil and m("model.vision_resampler.x") == nil)
end)

case("hf.open errors", function()
  local ctx = pv.context()
  expect_error(function() hf.open(ctx, TMP .. "/absent") end, "absent")
  local d = tdir("empty")
  expect_error(function() hf.open(ctx, d) end, "no model.safetensors", d)
  local d2 = tdir("badindex")
  save(d2 .. "/a.safetensors", {"head.probe"})
  write_text(d2 .. "/model.safetensors.index.json", json.encode({weight_map = {["head.probe"] = "a.safetensors",
    ["post_layernorm.bias"] = "a.safetensors"}}))
  expect_error(function() hf.open(ctx, d2) end, "post_layernorm.bias", "a.safetensors")
end)

golden:close()
src_ck:close()
os.execute("rm -rf " .. hf.shell_quote(TMP))
T:finish()
