-- Tests of lua/pivot/objectives.lua: shifted token log-probs, sequence log-probs, the SFT loss, the DPO family
-- (sigmoid with label smoothing, ipo, hinge, bco_pair, mpo), their gradients and TRL's metric set.
-- Values are checked against numbers computed here in double precision. Raises on failure.
local pv = require "pivot"
local obj = require "pivot.objectives"
local ffi = require "ffi"

local T = require("pivot.testing").suite("objectives")
local function case(name, fn) T:case(name, fn) end
local function near(a, b, tol, what)
  tol = tol or 1e-5
  if not (math.abs(a - b) <= tol * math.max(1, math.abs(b))) then
    error(string.format("%s = %.9g, expected %.9g", what or "value", a, b), 2)
  end
end
local function f32(x) return tonumber(ffi.new("float", x)) end
local function logsigmoid(x)
  if x < 0 then return x - math.log(1 + math.exp(x)) end
  return -math.log(1 + math.exp(-x))
end

-- small deterministic values
local seed = 12345
local function rnd()
  seed = (seed * 16807) % 2147483647
  return seed / 2147483647 * 2 - 1
end

-- a graph with four [B] inputs (policy chosen/rejected, reference chosen/rejected), trainable policy inputs
local function dpo_graph(B, o)
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local t = {pc = g:input("pc", {B}), pr = g:input("pr", {B}), rc = g:input("rc", {B}), rr = g:input("rr", {B})}
  t.pc:set_trainable(true)
  t.pr:set_trainable(true)
  local args = {policy_chosen = t.pc, policy_rejected = t.pr, reference_chosen = t.rc, reference_rejected = t.rr}
  for k, v in pairs(o) do args[k] = v end
  if o.sft_input then
    args.sft_loss = g:input("sft", {1})
    t.sft = args.sft_loss
  end
  local d = obj.dpo(g, args)
  d.loss:mark_output()
  obj.mark_metrics(d)
  g:backward(d.loss)
  local gpc, gpr = g:grad(t.pc), g:grad(t.pr)
  local plan = g:compile{backend = "cpu"}
  return {ctx = ctx, g = g, d = d, t = t, plan = plan, gpc = gpc, gpr = gpr}
end

local function run(G, vals)
  for k, v in pairs(vals) do G.plan:write(G.t[k], v) end
  G.plan:run()
  return G.plan:item(G.d.loss)
end

local B = 4
local V = {pc = {-10.5, -3.25, -7.0, -1.5}, pr = {-12.0, -2.5, -7.75, -4.0},
  rc = {-11.0, -3.0, -6.5, -2.0}, rr = {-11.5, -3.5, -7.5, -3.0}}
local function h(i) return (V.pc[i] - V.rc[i]) - (V.pr[i] - V.rr[i]) end

case("sigmoid: policy == reference gives exactly log 2", function()
  local G = dpo_graph(B, {beta = 0.1})
  local same = {pc = V.pc, pr = V.pr, rc = V.pc, rr = V.pr}
  local loss = run(G, same)
  assert(loss == f32(math.log(2)), string.format("loss %.10g, expected f32(log 2) = %.10g", loss, f32(math.log(2))))
  local m = obj.read_metrics(G.plan, G.d)
  assert(m["rewards/chosen"] == 0 and m["rewards/rejected"] == 0 and m["rewards/margins"] == 0, "zero rewards")
  assert(m["rewards/accuracies"] == 0, "accuracy with equal rewards is 0 (strict >)")
  -- gradient: d/dpc of mean(-logsigmoid(b h)) = -b * sigmoid(-b h) / B = -0.1 * 0.5 / 4
  local gc, gr = G.plan:read(G.gpc), G.plan:read(G.gpr)
  for i = 1, B do
    near(gc[i], -0.1 * 0.5 / B, 1e-6, "grad pc")
    near(gr[i], 0.1 * 0.5 / B, 1e-6, "grad pr")
  end
end)

case("sigmoid with label smoothing: values, gradient and metrics", function()
  local beta, eps = 0.5, 0.1
  local G = dpo_graph(B, {beta = beta, label_smoothing = eps})
  local loss = run(G, V)
  local want, acc, rc, rr, mar, lpc, lpr = 0, 0, 0, 0, 0, 0, 0
  for i = 1, B do
    local z = beta * h(i)
    want = want + (-(1 - eps) * logsigmoid(z) - eps * logsigmoid(-z)) / B
    local a, b = beta * (V.pc[i] - V.rc[i]), beta * (V.pr[i] - V.rr[i])
    rc, rr, mar = rc + a / B, rr + b / B, mar + (a - b) / B
    if a > b then acc = acc + 1 / B end
    lpc, lpr = lpc + V.pc[i] / B, lpr + V.pr[i] / B
  end
  near(loss, want, 1e-6, "loss")
  local m = obj.read_metrics(G.plan, G.d)
  for _, name in ipairs(obj.metric_names) do assert(m[name] ~= nil, "metric " .. name .. " missing") end
  for _, name in ipairs(obj.metric_names) do assert(G.d.metrics[name], "metric node " .. name .. " missing") end
  near(m["rewards/chosen"], rc, 1e-6, "rewards/chosen")
  near(m["rewards/rejected"], rr, 1e-6, "rewards/rejected")
  near(m["rewards/margins"], mar, 1e-6, "rewards/margins")
  near(m["rewards/accuracies"], acc, 0, "rewards/accuracies")
  near(G.plan:item(G.d.metrics["rewards/accuracies"]), acc, 1e-7, "rewards/accuracies node")
  near(m["logps/chosen"], lpc, 1e-6, "logps/chosen")
  near(m["logps/rejected"], lpr, 1e-6, "logps/rejected")
  near(m.loss, want, 1e-6, "metrics loss")
  -- d loss / d pc_i = beta/B * (-(1-eps) sigmoid(-z) + eps sigmoid(z))
  local gc = G.plan:read(G.gpc)
  for i = 1, B do
    local z = beta * h(i)
    local s = 1 / (1 + math.exp(z)) -- sigmoid(-z)
    near(gc[i], beta / B * (-(1 - eps) * s + eps * (1 - s)), 1e-6, "grad pc[" .. i .. "]")
  end
end)

case("ipo and hinge against hand-computed values", function()
  local beta = 0.25
  local Gi = dpo_graph(B, {beta = beta, loss_type = "ipo"})
  local Gh = dpo_graph(B, {beta = beta, loss_type = "hinge"})
  local li, lh = run(Gi, V), run(Gh, V)
  local wi, wh = 0, 0
  for i = 1, B do
    wi = wi + (h(i) - 1 / (2 * beta)) ^ 2 / B
    wh = wh + math.max(0, 1 - beta * h(i)) / B
  end
  -- h = {0.5-(-0.5), ...}: hand values for the record
  assert(math.abs(h(1) - 1.0) < 1e-12 and math.abs(h(2) - (-1.25)) < 1e-12, "test data")
  near(li, wi, 1e-6, "ipo")
  near(lh, wh, 1e-6, "hinge")
  -- a hinge pair past the margin gives zero gradient
  local gh = Gh.plan:read(Gh.gpc)
  for i = 1, B do
    local want = (1 - beta * h(i) > 0) and (-beta / B) or 0
    near(gh[i], want, 1e-6, "hinge grad[" .. i .. "]")
  end
end)

case("bco_pair with and without the reward shift", function()
  local beta, delta = 0.1, 0.03
  local G0 = dpo_graph(B, {beta = beta, loss_type = "bco_pair"})
  local G1 = dpo_graph(B, {beta = beta, loss_type = "bco_pair", delta = delta})
  local l0, l1 = run(G0, V), run(G1, V)
  local w0, w1 = 0, 0
  for i = 1, B do
    local a, b = beta * (V.pc[i] - V.rc[i]), beta * (V.pr[i] - V.rr[i])
    w0 = w0 + (-logsigmoid(a) - logsigmoid(-b)) / B
    w1 = w1 + (-logsigmoid(a - delta) - logsigmoid(-(b - delta))) / B
  end
  near(l0, w0, 1e-6, "bco_pair")
  near(l1, w1, 1e-6, "bco_pair with delta")
  -- the host running mean of the batch-mean rewards
  local rm = obj.running_mean()
  rm:update({1, 2}, {3, 4})
  near(rm.mean, 2.5, 1e-12, "running mean")
  rm:update({0, 0}, {0, 0})
  near(rm.mean, 1.25, 1e-12, "running mean after two batches")
end)

case("mpo = 0.8 sigmoid + 0.2 bco_pair + 1.0 sft", function()
  local beta, sft = 0.1, 1.75
  local G = dpo_graph(B, {beta = beta, loss_type = "mpo", sft_input = true})
  G.plan:write(G.t.sft, {sft})
  local loss = run(G, V)
  local ws, wb = 0, 0
  for i = 1, B do
    local a, b = beta * (V.pc[i] - V.rc[i]), beta * (V.pr[i] - V.rr[i])
    ws = ws - logsigmoid(beta * h(i)) / B
    wb = wb + (-logsigmoid(a) - logsigmoid(-b)) / B
  end
  near(loss, 0.8 * ws + 0.2 * wb + 1.0 * sft, 1e-6, "mpo")
  local m = obj.read_metrics(G.plan, G.d)
  near(m["losses/sigmoid"], ws, 1e-6, "losses/sigmoid")
  near(m["losses/bco_pair"], wb, 1e-6, "losses/bco_pair")
  near(m["losses/sft"], sft, 1e-6, "losses/sft")
  -- custom weights as a list of loss types
  local G2 = dpo_graph(B, {beta = beta, loss_type = {"sigmoid", "hinge"}, weights = {sigmoid = 2, hinge = 0.5}})
  local l2 = run(G2, V)
  local wh = 0
  for i = 1, B do wh = wh + math.max(0, 1 - beta * h(i)) / B end
  near(l2, 2 * ws + 0.5 * wh, 1e-6, "weighted sigmoid + hinge")
  -- mpo without an sft loss node is an error that says so
  local ok, err = pcall(dpo_graph, B, {beta = beta, loss_type = "mpo"})
  assert(not ok and tostring(err):find("sft_loss", 1, true), tostring(err))
  local ok2, err2 = pcall(dpo_graph, B, {loss_type = "nope"})
  assert(not ok2 and tostring(err2):find("nope", 1, true), tostring(err2))
end)

-- host log-softmax reference for the token-level functions
local function host_logps(logits, labels, Bn, L, Vn)
  local tok, seq, tot, cnt = {}, {}, 0, 0
  for b = 0, Bn - 1 do
    seq[b + 1] = 0
    for t = 0, L - 2 do
      local y = labels[b * L + t + 2]
      local v = 0
      if y ~= -100 then
        local mx = -math.huge
        for k = 0, Vn - 1 do mx = math.max(mx, logits[(b * L + t) * Vn + k + 1]) end
        local s = 0
        for k = 0, Vn - 1 do s = s + math.exp(logits[(b * L + t) * Vn + k + 1] - mx) end
        v = logits[(b * L + t) * Vn + y + 1] - mx - math.log(s)
        tot, cnt = tot + v, cnt + 1
      end
      tok[b * (L - 1) + t + 1] = v
      seq[b + 1] = seq[b + 1] + v
    end
  end
  return tok, seq, -tot / cnt
end

case("token_logps, sequence_logps and sft_loss use the HF shift", function()
  local Bn, L, Vn = 3, 6, 7
  local logits, labels = {}, {}
  for i = 1, Bn * L * Vn do logits[i] = rnd() * 3 end
  local lab = {
    {-100, -100, 3, 4, 6, -100},
    {-100, 1, 0, -100, -100, -100},
    {-100, -100, -100, -100, 5, 2},
  }
  for b = 1, Bn do for t = 1, L do labels[#labels + 1] = lab[b][t] end end
  local tok, seq, sft = host_logps(logits, labels, Bn, L, Vn)
  for _, dt in ipairs {"i64", "i32"} do
    local ctx = pv.context{threads = 1}
    local g = ctx:graph()
    local x = g:input("logits", {Bn, L, Vn})
    x:set_trainable(true)
    local y = g:input("labels", {Bn, L}, dt)
    local tl = obj.token_logps(g, x, y)
    local sl = obj.sequence_logps(g, x, y)
    local al = obj.sequence_logps(g, x, y, {average = true})
    local loss, count = obj.sft_loss(g, x, y)
    for _, t in ipairs {tl, sl, al, loss, count} do t:mark_output() end
    g:backward(loss)
    local gx = g:grad(x)
    local plan = g:compile{backend = "cpu"}
    plan:run{[x] = logits, [y] = labels}
    local s = tl.shape
    assert(s[1] == Bn and s[2] == L - 1, "token_logps shape")
    local got = plan:read(tl)
    for i = 1, #tok do near(got[i], tok[i], 1e-5, "token_logps[" .. i .. "]") end
    local gs, ga = plan:read(sl), plan:read(al)
    local counts = {3, 2, 2}
    for b = 1, Bn do
      near(gs[b], seq[b], 1e-5, "sequence_logps[" .. b .. "]")
      near(ga[b], seq[b] / counts[b], 1e-5, "average logps[" .. b .. "]")
    end
    near(plan:item(loss), sft, 1e-5, "sft_loss")
    near(plan:item(count), 7, 0, "token count")
    -- the gradient of the first row's first predicted token: (softmax - onehot) / count at logits[0, 1]
    local gr = plan:read(gx)
    local row = {}
    for k = 1, Vn do row[k] = logits[(0 * L + 1) * Vn + k] end
    local mx = math.max(unpack(row))
    local z = 0
    for k = 1, Vn do z = z + math.exp(row[k] - mx) end
    for k = 1, Vn do
      local p = math.exp(row[k] - mx) / z
      local want = (p - ((k - 1) == 3 and 1 or 0)) / 7
      near(gr[(0 * L + 1) * Vn + k], want, 1e-5, "grad logits[0,1," .. (k - 1) .. "]")
    end
    -- positions whose next label is ignored get no gradient; the last position never does
    for k = 1, Vn do
      near(gr[(0 * L + 0) * Vn + k], 0, 0, "grad at an ignored position")
      near(gr[(0 * L + L - 1) * Vn + k], 0, 0, "grad at the last position")
    end
  end
end)

case("DPO from cached reference log-probs (inputs) and from a logits graph", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local Bn, L, Vn = 2, 5, 6
  local x = g:input("logits", {2 * Bn, L, Vn})
  x:set_trainable(true)
  local y = g:input("labels", {2 * Bn, L}, "i64")
  local seq = obj.sequence_logps(g, x, y)
  local rc, rr = obj.reference_inputs(g, Bn)
  local d = obj.dpo(g, {policy_chosen = seq:slice(0, 0, Bn), policy_rejected = seq:slice(0, Bn, 2 * Bn),
    reference_chosen = rc, reference_rejected = rr, beta = 0.1})
  obj.mark_metrics(d)
  g:backward(d.loss)
  local plan = g:compile{backend = "cpu"}
  local logits, labels = {}, {}
  for i = 1, 2 * Bn * L * Vn do logits[i] = rnd() end
  local lab = {{-100, -100, 1, 2, 3}, {-100, -100, 4, -100, -100}, {-100, -100, 5, 0, -100}, {-100, -100, 2, 2, 2}}
  for r = 1, 2 * Bn do for t = 1, L do labels[#labels + 1] = lab[r][t] end end
  local _, s = host_logps(logits, labels, 2 * Bn, L, Vn)
  local refc, refr = {-3.0, -2.5}, {-4.0, -5.5}
  plan:run{[x] = logits, [y] = labels, [rc] = refc, [rr] = refr}
  local want = 0
  for b = 1, Bn do
    want = want - logsigmoid(0.1 * ((s[b] - refc[b]) - (s[Bn + b] - refr[b]))) / Bn
  end
  near(plan:item(d.loss), want, 1e-6, "dpo loss")
  local m = obj.read_metrics(plan, d)
  near(m["logps/chosen"], (s[1] + s[2]) / 2, 1e-5, "logps/chosen")
  near(m["ref_logps/rejected"], (refr[1] + refr[2]) / 2, 1e-6, "ref_logps/rejected")
end)

case("errors name the function and the shapes", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local x = g:input("logits", {2, 5, 6})
  local y = g:input("labels", {2, 4}, "i64")
  local ok, err = pcall(obj.sft_loss, g, x, y)
  assert(not ok and tostring(err):find("sft_loss", 1, true) and tostring(err):find("[2, 4]", 1, true), tostring(err))
  local yf = g:input("labelsf", {2, 5})
  ok, err = pcall(obj.token_logps, g, x, yf)
  assert(not ok and tostring(err):find("i32 or i64", 1, true), tostring(err))
end)

T:finish()
