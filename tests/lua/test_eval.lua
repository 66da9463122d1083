-- Tests of lua/pivot/eval: the linear probe (separable synthetic features -> > 0.9, random labels -> chance;
-- features of a tiny SigLIP tower, batched with padding), the segmentation probe's metrics on a hand-built case
-- (exact recall / IoU) and a run on world samples, and VQA candidate scoring on a toy model whose logits are set
-- by hand (the prediction is the candidate with the highest log-prob, checked against a host computation).
-- Run by ctest as `pivot run tests/lua/test_eval.lua`.
local pv = require "pivot"
local ffi = pv.ffi
local probe = require "pivot.eval.probe"
local seg = require "pivot.eval.seg"
local vqa = require "pivot.eval.vqa"
local world = require "pivot.world"
local siglip = require "pivot.models.siglip"
local mllm = require "pivot.models.mllm"
local wt = require "pivot.world_tokenizer"

local T = require("pivot.testing").suite("eval")
local function case(name, fn) T:case(name, fn) end
local function near(a, b, tol, what)
  if not (math.abs(a - b) <= (tol or 1e-6)) then
    error(string.format("%s = %.9g, expected %.9g", what or "value", a, b), 2)
  end
end

-- deterministic normal numbers (LCG + Box-Muller)
local function gauss(seed)
  local s = seed
  local function u()
    s = (s * 16807) % 2147483647
    return (s + 0.5) / 2147483647
  end
  return function() return math.sqrt(-2 * math.log(u())) * math.cos(2 * math.pi * u()) end, function(n)
    return math.floor(u() * n)
  end
end

local ctx = pv.context{threads = 1, seed = 7}

case("linear probe: separable features -> > 0.9; random labels -> chance", function()
  local D, C, ntr, nte = 16, 4, 400, 200
  local g, int = gauss(12345)
  local means = {}
  for c = 1, C do
    means[c] = {}
    for d = 1, D do means[c][d] = 1.5 * g() end
  end
  local function make(n, random_labels)
    local X, y = ffi.new("float[?]", n * D), {}
    for i = 0, n - 1 do
      local c = int(C)
      for d = 0, D - 1 do X[i * D + d] = means[c + 1][d + 1] + g() + 5 end -- offset: standardisation matters
      y[i + 1] = random_labels and int(C) or c
    end
    return X, y
  end
  local Xtr, ytr = make(ntr)
  local Xte, yte = make(nte)
  local r = probe.linear_features(ctx, Xtr, ytr, Xte, yte, D, {steps = 200})
  print(string.format("      separable: top1 %.3f train %.3f loss %.4f", r.top1, r.train_top1, r.loss))
  assert(r.top1 > 0.9, "separable top-1 " .. r.top1)
  assert(r.train_top1 > 0.9)
  assert(r.curve[1][2] > r.loss, "the loss went down")
  near(r.curve[1][2], math.log(C), 1e-4, "initial loss (zero init) = ln C")
  -- random labels: the held-out accuracy is near chance (1/4; 3 sigma of 200 draws ~ 0.09)
  local Xr, yr = make(ntr, true)
  local Xrt, yrt = make(nte, true)
  local rr = probe.linear_features(ctx, Xr, yr, Xrt, yrt, D, {steps = 200})
  print(string.format("      random labels: top1 %.3f train %.3f", rr.top1, rr.train_top1))
  assert(rr.top1 < 0.25 + 0.1 and rr.top1 > 0.25 - 0.1, "random-label top-1 " .. rr.top1)
  -- temporary vars are removed
  for _, v in ipairs(ctx:vars()) do assert(not v.name:find("^eval%."), "left over var " .. v.name) end
end)

-- a tiny SigLIP tower config
local VCFG = {hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, num_attention_heads = 2,
  num_channels = 3, image_size = 32, patch_size = 8, layer_norm_eps = 1e-6, hidden_act = "gelu_pytorch_tanh"}

case("features: batched with padding = one at a time; mean pooling = mean of the patch features", function()
  local tower = siglip.new(ctx, "ftest", VCFG, {feature_layer = -2})
  local w = world.new(ctx, {image_size = 32})
  local items = {}
  for i = 1, 7 do items[i] = w:sample(3, i) end
  local X, n, P, D = probe.features(ctx, tower, items, {batch = 4})
  assert(n == 7 and P == 16 and D == 32, string.format("n %d P %d D %d", n, P, D))
  local X1 = probe.features(ctx, tower, {items[7]}, {batch = 1})
  for d = 0, D - 1 do near(X[6 * D + d], X1[d], 1e-5, "feature " .. d) end
  local Xp = probe.features(ctx, tower, {items[7]}, {pool = "none", batch = 1})
  for d = 0, D - 1 do
    local s = 0
    for p = 0, P - 1 do s = s + Xp[p * D + d] end
    near(s / P, X1[d], 1e-5, "pooled feature " .. d)
  end
  -- the feature layer: layer 0 (the embeddings) differs from the configured one
  local X0 = probe.features(ctx, tower, {items[7]}, {batch = 1, layer = 0})
  local diff = 0
  for d = 0, D - 1 do diff = diff + math.abs(X0[d] - X1[d]) end
  assert(diff > 1e-3, "layer 0 features equal the layer-1 features")
  -- the probe on the tower runs end to end (labels: colour of the largest object)
  local train, test = {}, {}
  for i = 0, 59 do train[#train + 1] = w:sample(5, i) end
  for i = 0, 29 do test[#test + 1] = w:sample(6, i) end
  local r = probe.linear(ctx, tower, train, test, {label = "color", num_classes = #w.colors, steps = 100})
  print(string.format("      random tower colour probe: top1 %.3f train %.3f", r.top1, r.train_top1))
  assert(r.top1 >= 0 and r.top1 <= 1 and r.train_top1 > r.top1 - 0.2 and r.dim == 32)
end)

case("segmentation metrics on a hand-built case", function()
  -- 4 patches x 4 classes; class 3 has no support and no predictions (left out of the means)
  local z = {
    2, -1, 0.5, -1,
    -3, 1, -0.2, -1,
    0, 4, 1, -1,     -- z = 0 is not a positive (sigmoid(0) = 0.5 is not > 0.5)
    1, -2, -1, -1,
  }
  local y = {
    1, 0, 0, 0,
    0, 1, 1, 0,
    1, 1, 0, 0,
    0, 0, 0, 0,
  }
  local s = seg.evaluate_logits(ctx, z, y, 4, 4)
  local pc = s.per_class
  -- class 0: pred 1,0,0,1 vs 1,0,1,0 -> TP 1, FP 1, FN 1
  assert(pc[1].tp == 1 and pc[1].fp == 1 and pc[1].fn == 1, "class 0 counts")
  assert(pc[2].tp == 2 and pc[2].fp == 0 and pc[2].fn == 0, "class 1 counts")
  assert(pc[3].tp == 0 and pc[3].fp == 2 and pc[3].fn == 1, "class 2 counts")
  assert(pc[4].tp == 0 and pc[4].fp == 0 and pc[4].fn == 0 and pc[4].recall == nil and pc[4].iou == nil)
  near(pc[1].recall, 0.5) near(pc[1].iou, 1 / 3)
  near(pc[2].recall, 1) near(pc[2].iou, 1)
  near(pc[3].recall, 0) near(pc[3].iou, 0)
  near(s.recall, 0.5, 1e-12, "macro recall")
  near(s.miou, 4 / 9, 1e-12, "mIoU")
  assert(s.classes_recall == 3 and s.classes_iou == 3)
  local s2 = seg.evaluate_logits(ctx, z, y, 4, 4, {ignore = {[0] = true}})
  near(s2.recall, 0.5, 1e-12, "recall without the background")
  near(s2.miou, 0.5, 1e-12, "mIoU without the background")
end)

case("segmentation probe on world samples (a tiny random tower)", function()
  local tower = siglip.new(ctx, "stest", VCFG, {feature_layer = -2})
  local w = world.new(ctx, {image_size = 32})
  local train, test = {}, {}
  for i = 0, 79 do train[#train + 1] = w:sample(8, i) end
  for i = 0, 39 do test[#test + 1] = w:sample(9, i) end
  local r = seg.linear(ctx, tower, train, test, {attribute = "color", steps = 150})
  print(string.format("      seg probe: recall %.3f mIoU %.3f (%d classes, %d patches)", r.recall, r.miou,
    r.num_classes, r.patches))
  assert(r.num_classes == 1 + #w.colors and r.patches == 16)
  assert(r.recall >= 0 and r.recall <= 1 and r.miou >= 0 and r.miou <= 1)
  assert(r.per_class[1].name == "background" and r.per_class[1].recall > 0.5, "the background is found")
  assert(r.curve[#r.curve][2] < r.curve[1][2], "the BCE loss went down")
  for _, v in ipairs(ctx:vars()) do assert(not v.name:find("^eval%."), "left over var " .. v.name) end
end)

case("VQA: the prediction is the candidate with the highest log-prob (hand-set bigram logits)", function()
  local w = world.new(ctx, {image_size = 32})
  local path = os.tmpname()
  local info = wt.build(w:vocabulary(), path)
  local tok = ctx:tokenizer(path)
  os.remove(path)
  local V = info.vocab_size
  -- the toy model: logits[t] = W[ids[t]] (a bigram table), one image token (placeholder mode: L = Lt)
  local W = ctx:var("toyvqa.W", {V, V}, {init = "normal", std = 2})
  local model = {image_size = 32, num_image_tokens = 1}
  function model.forward(self, g, a)
    local logits = g:use(W):embedding(a.input_ids) -- [R, Lt, V]
    return {logits = logits + a.pixel_values:sum_all():scale(0)}
  end
  function model.labels(self, labels, R, Lt, pos) return mllm.splice_labels(labels, R, Lt, 1, pos) end
  local samples = {}
  for i = 0, 5 do samples[#samples + 1] = w:sample(21, i) end
  local items = vqa.items(w, samples)
  assert(#items >= 30, #items .. " questions")
  -- make one answer certain: after the prompt's last token, "blue" gets a huge logit
  local chat = require "pivot.chat"
  local probe_row = chat.build(tok, "q", "blue")
  local last = probe_row.ids[probe_row.prompt_len]
  local blue = tok:encode("blue")[1]
  local Wt = W:read()
  Wt[last * V + blue + 1] = 30
  W:write(Wt)
  local r = vqa.evaluate(ctx, model, tok, items, {batch = 4})
  -- host scores: sum over completion tokens of log_softmax(W[prev])[next]
  local lse = {}
  local function logsumexp(row)
    if lse[row] then return lse[row] end
    local m = -math.huge
    for j = 0, V - 1 do m = math.max(m, Wt[row * V + j + 1]) end
    local s = 0
    for j = 0, V - 1 do s = s + math.exp(Wt[row * V + j + 1] - m) end
    lse[row] = m + math.log(s)
    return lse[row]
  end
  local right, count = {}, {}
  for i, it in ipairs(items) do
    local best, bi = -math.huge, nil
    for j, c in ipairs(it.candidates) do
      local s = chat.build(tok, it.question, c)
      local lp = 0
      for t = s.prompt_len + 1, #s.ids do
        local prev, nxt = s.ids[t - 1], s.ids[t]
        lp = lp + Wt[prev * V + nxt + 1] - logsumexp(prev)
      end
      near(r.predictions[i].scores[j], lp, 2e-3 * math.max(1, math.abs(lp)), "score of '" .. c .. "'")
      if lp > best then best, bi = lp, j end
    end
    assert(r.predictions[i].predicted == it.candidates[bi], "item " .. i .. ": predicted " ..
      tostring(r.predictions[i].predicted) .. ", host argmax " .. it.candidates[bi])
    if it.candidates[bi] == "blue" or (function() for _, c in ipairs(it.candidates) do if c == "blue" then return true end end end)() then
      assert(r.predictions[i].predicted == "blue", "the hand-set logit decides colour questions")
    end
    local t = it.type
    count[t] = (count[t] or 0) + 1
    right[t] = (right[t] or 0) + (it.candidates[bi] == it.answer and 1 or 0)
  end
  for t, n in pairs(count) do near(r.by_type[t], right[t] / n, 1e-12, "accuracy of " .. t) end
  assert(r.by_type.knowledge ~= nil and r.knowledge == r.by_type.knowledge)
  assert(r.vision ~= nil and r.n == #items)
  local vt = 0
  for _, it in ipairs(items) do if it.type ~= "knowledge" then vt = vt + 1 end end
  local vr = 0
  for i, it in ipairs(items) do if it.type ~= "knowledge" and r.predictions[i].correct then vr = vr + 1 end end
  near(r.vision, vr / vt, 1e-12, "vision accuracy")
end)

case("stage 0: SigLIP contrastive pretraining lowers the loss and retrieves captions above chance", function()
  local pretrain = require "pivot.pretrain"
  local tower = siglip.new(ctx, "ptest", VCFG, {feature_layer = -2})
  local w = world.new(ctx, {image_size = 32})
  local before = ctx:find_var("ptest.encoder.layers.0.self_attn.q_proj.weight"):read()
  local r = pretrain.run(ctx, tower, w, {steps = 300, batch = 16, lr = 3e-3, text = {dim = 32, layers = 1, heads = 2,
    max_len = 48}, embed_dim = 32, prefix = "ptest0"})
  local n = #r.curve
  assert(n == 300 and r.curve[1][1] == 1)
  local function avg(c, a, b) local s = 0 for i = a, b do s = s + c[i][2] end return s / (b - a + 1) end
  local l0, l1 = avg(r.curve, 1, 5), avg(r.curve, n - 9, n)
  local a1 = avg(r.accuracy, n - 9, n)
  print(string.format("      SigLIP loss %.4f -> %.4f, in-batch image->text top-1 %.2f (chance %.2f)", l0, l1, a1, 1 / 16))
  assert(l1 < l0, "the loss went down")
  assert(a1 > 2 / 16, "retrieval above chance")
  local after = ctx:find_var("ptest.encoder.layers.0.self_attn.q_proj.weight"):read()
  local d = 0
  for i = 1, #after do d = d + math.abs(after[i] - before[i]) end
  assert(d > 0, "the vision tower was trained")
  -- the initial loss: t = log 10, b = -10 -> mean over pairs of -logsigmoid(z (10 cos - 10))
  assert(r.curve[1][2] > 0 and r.curve[1][2] < 2, "initial loss " .. r.curve[1][2])
end)

T:finish()
