-- Tests of lua/pivot/eval/gradmap.lua: on hand-built samples where only one object matters (the answer is the
-- colour of the object in the top-left cell; the other objects are distractors), a tiny MLLM (SigLIP tower +
-- projector + Qwen2 from configs) trained briefly to answer it has gradient maps whose focus on that object is above
-- the uniform share (object patches / all patches). Also: the map equals a finite-difference check of the loss,
-- DPO at policy = reference has loss log 2, and the panel PNG (image | SFT map | DPO map) is written.
-- Run by ctest as `pivot run tests/lua/test_gradmap.lua`. PIVOT_TEST_OUT=dir keeps the panel there.
local pv = require "pivot"
local ffi = pv.ffi
local world = require "pivot.world"
local wt = require "pivot.world_tokenizer"
local mllm = require "pivot.models.mllm"
local chat = require "pivot.chat"
local obj = require "pivot.objectives"
local train = require "pivot.train"
local gradmap = require "pivot.eval.gradmap"

local passed, failed = 0, 0
local function case(name, fn)
  local t0 = os.time()
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    print(string.format("ok    %s (%d s)", name, os.time() - t0))
  else
    failed = failed + 1
    io.stderr:write("FAIL ", name, ": ", tostring(err), "\n")
  end
end

local OUT = os.getenv("PIVOT_TEST_OUT") or (os.tmpname() .. "_gradmap")
os.execute("mkdir -p '" .. OUT .. "'")

local ctx = pv.context{threads = tonumber(os.getenv("GM_THREADS") or 1), seed = 3}
local S, PATCH = 32, 4
local w = world.new(ctx, {image_size = S, grid = 3, min_objects = 2, max_objects = 4})
local tokpath = OUT .. "/world_tokenizer.json"
local tinfo = wt.build(w:vocabulary(), tokpath)
local tok = ctx:tokenizer(tokpath)

local CFG = {
  vision = {hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, num_attention_heads = 2, num_channels = 3,
    image_size = S, patch_size = PATCH, layer_norm_eps = 1e-6, hidden_act = "gelu_pytorch_tanh"},
  llm = {vocab_size = tinfo.vocab_size, hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2,
    num_attention_heads = 2, num_key_value_heads = 1, rms_norm_eps = 1e-6, rope_theta = 10000,
    tie_word_embeddings = true, hidden_act = "silu", initializer_range = 0.05},
  vision_feature_layer = -2,
}
local CHAT = {system = false}
local QUESTION = "What color is the object at the top left?"

-- samples with an object in the top-left cell: the answer is its colour
local function collect(seed, n)
  local out, idx = {}, 0
  while #out < n do
    local rgb, image, inst, objs = w:scene(seed, idx)
    idx = idx + 1
    for k, o in ipairs(objs) do
      if o.cell_x == 0 and o.cell_y == 0 then
        local wrong = w.colors[(o.color_id + 1 + (idx % (#w.colors - 1))) % #w.colors + 1]
        out[#out + 1] = {image = image, rgb = rgb, instance = inst, S = S, objects = {k}, question = QUESTION,
          answer = o.color, rejected = wrong, n_objects = #objs}
        break
      end
    end
  end
  return out
end

local model = mllm.new(ctx, CFG)
local N = model.num_image_tokens

case("gradient map = d loss / d image_embeds (finite differences), DPO at policy = reference is log 2", function()
  local item = collect(99, 1)[1]
  local r = gradmap.compute(ctx, model, tok, item, {loss = "sft", chat = CHAT})
  assert(#r.map == N and r.grid == 8, "map of " .. #r.map)
  -- finite differences on the loss along one embedding coordinate of the top patch, through the same plans
  local best = 1
  for p = 1, N do if r.map[p] > r.map[best] then best = p end end
  assert(r.map[best] > 0)
  local d = gradmap.compute(ctx, model, tok, item, {loss = "dpo", chat = CHAT})
  assert(math.abs(d.loss - math.log(2)) < 1e-5, "DPO loss at policy = reference: " .. d.loss)
  assert(#d.map == N and d.map[best] >= 0)
  -- prefix mode (no image text; the image tokens go first), chat options given as a study environment's fields
  local pf = gradmap.compute(ctx, model, tok, item, {loss = "dpo", image_mode = "prefix", system = false})
  assert(#pf.map == N and math.abs(pf.loss - math.log(2)) < 1e-5 and pf.focus >= 0 and pf.focus <= 1)
  -- with given reference log-probs the loss follows the DPO formula
  local rc, rr = d.logps.chosen - 1, d.logps.rejected + 1
  local d2 = gradmap.compute(ctx, model, tok, item, {loss = "dpo", chat = CHAT, ref_logps = {rc, rr}})
  local h = (d.logps.chosen - rc) - (d.logps.rejected - rr)
  local expect = -(-math.log(1 + math.exp(-0.1 * h)))
  assert(math.abs(d2.loss - expect) < 1e-5, string.format("DPO loss %.6f, expected %.6f", d2.loss, expect))
  -- the L1 map by finite differences: perturb all channels of one image token by +eps*sign(grad) ~ via the SFT loss
  -- computed by hand in a separate graph
  local H = model.hidden
  local g = ctx:graph()
  local emb_in = g:input("emb", {1, N, H})
  local bt = chat.batch({chat.build(tok, item.question, item.answer, CHAT)}, nil, {pad_id = 0})
  local ids = g:input("ids", {1, bt.Lt}, "i32")
  local out = model:forward(g, {image_embeds = emb_in, input_ids = ids, image_pos = bt.image_pos})
  local labels = g:input("labels", {1, out.logits.shape[2]}, "i32")
  local loss = obj.sft_loss(g, out.logits, labels)
  loss:mark_output()
  local plan = g:compile()
  -- the image embeddings from the model
  local g2 = ctx:graph()
  local px = g2:input("px", {1, 3, S, S})
  local emb = model:encode_images(g2, px).image_embeds
  emb:mark_output()
  local p2 = g2:compile()
  p2:write(px, item.image)
  p2:run()
  local E = p2:read_raw(emb)
  plan:write(ids, bt.ids)
  plan:write(labels, (model:labels(bt.labels, 1, bt.Lt, bt.image_pos)))
  local function loss_at(buf)
    plan:write(emb_in, buf)
    plan:run()
    return plan:item(loss)
  end
  local base = loss_at(E)
  assert(math.abs(base - r.loss) < 1e-5, string.format("SFT loss %.6f vs gradmap %.6f", base, r.loss))
  -- directional derivative along e_c for a few channels of token `best`: sum |dL/de| ~ L1 of central differences
  local eps, l1 = 1e-2, 0
  local buf = ffi.new("float[?]", N * H)
  for c = 0, H - 1 do
    ffi.copy(buf, E, N * H * 4)
    local i = (best - 1) * H + c
    buf[i] = E[i] + eps
    local lp = loss_at(buf)
    buf[i] = E[i] - eps
    local lm = loss_at(buf)
    l1 = l1 + math.abs((lp - lm) / (2 * eps))
  end
  local rel = math.abs(l1 - r.map[best]) / r.map[best]
  print(string.format("      token %d: map %.5g, finite differences %.5g (rel %.2g)", best, r.map[best], l1, rel))
  assert(rel < 0.05, "the map does not match finite differences")
  g:free()
  g2:free()
end)

case("focus: a model trained to answer about one object has its gradient on that object", function()
  local train_items = collect(1, 240)
  local test_items = collect(2, 12)
  -- focus of the untrained model (for the record)
  local function mean_focus(kind)
    local f, u = 0, 0
    for _, it in ipairs(test_items) do
      local r = gradmap.compute(ctx, model, tok, it, {loss = kind, chat = CHAT})
      f, u = f + r.focus, u + r.uniform
    end
    return f / #test_items, u / #test_items
  end
  local f0, u0 = mean_focus("sft")
  -- SFT training: one fused plan (trainer), batches of 16
  local B = 16
  local rows = {}
  for i, it in ipairs(train_items) do rows[i] = chat.build(tok, it.question, it.answer, CHAT) end
  local Lt = 0
  for _, r in ipairs(rows) do Lt = math.max(Lt, #r.ids) end
  local pos = {}
  for i = 1, B do pos[i] = rows[1].image_pos end
  local L = model:seq_len(Lt, true)
  local tr = train.new{ctx = ctx, model = model, lr = 3e-3, steps = 250, schedule = "cosine", warmup_ratio = 0.05,
    max_grad_norm = 1.0, quiet = true,
    build = function(g, _)
      local px = g:input("px", {B, 3, S, S})
      local ids = g:input("ids", {B, Lt}, "i32")
      local labels = g:input("labels", {B, L}, "i32")
      local out = model:forward(g, {pixel_values = px, input_ids = ids, image_pos = pos})
      return {loss = obj.sft_loss(g, out.logits, labels), inputs = {px = px, ids = ids, labels = labels}}
    end}
  local pixels = ffi.new("float[?]", B * 3 * S * S)
  local per = 3 * S * S
  local cursor = 0
  local first, last
  local t0 = os.clock()
  for step = 1, 250 do
    local batch = {}
    for b = 1, B do
      local i = cursor % #train_items + 1
      cursor = cursor + 1
      ffi.copy(pixels + (b - 1) * per, train_items[i].image, per * 4)
      batch[b] = rows[i]
    end
    local bt = chat.batch(batch, Lt, {pad_id = 0})
    local m = tr:step{bucket = "b", feeds = {px = pixels, ids = bt.ids,
      labels = (model:labels(bt.labels, B, Lt, pos))}}
    if step == 1 then first = m.loss end
    last = m.loss
  end
  print(string.format("      SFT loss %.3f -> %.3f in 250 steps (%.1f s cpu)", first, last, os.clock() - t0))
  assert(last < first, "the loss went down")
  -- accuracy on the held-out items: the answer's colour gets the highest log-prob among the colours
  local vqa = require "pivot.eval.vqa"
  local items = {}
  for _, it in ipairs(test_items) do
    items[#items + 1] = {image = it.image, question = it.question, answer = it.answer, type = "color",
      candidates = w.colors}
  end
  local acc = vqa.evaluate(ctx, model, tok, items, {chat = CHAT}).by_type.color
  local f1, u1 = mean_focus("sft")
  local fd = mean_focus("dpo")
  print(string.format("      held-out colour accuracy %.2f; focus on the object: untrained %.3f, SFT %.3f, DPO %.3f;"
    .. " uniform share %.3f", acc, f0, f1, fd, u1))
  assert(f1 > u1, string.format("SFT focus %.3f is not above the uniform share %.3f", f1, u1))
  assert(fd > u1, string.format("DPO focus %.3f is not above the uniform share %.3f", fd, u1))
  -- panels: image | SFT map | DPO map, with the object's patches outlined
  for i = 1, 3 do
    local it = test_items[i]
    local s = gradmap.compute(ctx, model, tok, it, {loss = "sft", chat = CHAT})
    local d = gradmap.compute(ctx, model, tok, it, {loss = "dpo", chat = CHAT})
    local path = string.format("%s/gradmap_%d.png", OUT, i)
    gradmap.panel(path, it.rgb, S, {s, d}, {string.format("SFT %.2f", s.focus), string.format("DPO %.2f", d.focus)},
      {outline = s.object_patches, caption = string.format("%s %s (rejected: %s)", it.question, it.answer,
        it.rejected)})
    local f = assert(io.open(path, "rb"))
    local head = f:read(8)
    f:close()
    assert(head == "\137PNG\r\n\26\n", "not a PNG")
    print("      panel: " .. path)
  end
end)

if not os.getenv("PIVOT_TEST_OUT") and failed == 0 then os.execute("rm -rf '" .. OUT .. "'") end
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then error(failed .. " test(s) failed") end
