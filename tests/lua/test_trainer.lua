-- Tests of pivot.train: optimizer groups, frozen modules, in-graph clipping, gradient accumulation, schedules,
-- metrics.jsonl and NaN detection, on a small MLP regression built from pivot.nn modules.
local ffi = require "ffi"
local pv = require "pivot"
local nn = require "pivot.nn"
local json = require "pivot.json"
local train = require "pivot.train"
local ckpt = train.checkpoint
local schedule = train.schedule

local passed, failed = 0, 0
local function test(name, fn)
  local t0 = os.clock()
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    print(string.format("ok    %s (%.2f s cpu)", name, os.clock() - t0))
  else
    failed = failed + 1
    print("FAIL  " .. name .. ": " .. tostring(err))
  end
end

local TMP = string.format("/tmp/pivot_test_trainer_%d", ckpt.getpid())
ckpt.rmtree(TMP)
ckpt.mkdirs(TMP)

---------------------------------------------------------------------------------------------------- the model
-- net.enc (frozen Linear 4->8) -> tanh -> net.fc1 (8->16) -> relu -> net.fc2 (16->1); net.aux holds a weight and a
-- no-decay bias that enter the loss multiplied by 0 (so their gradient is exactly zero).
local function make_model(ctx)
  local net = nn.module(ctx, "net")
  local parts = {}
  parts.enc = net:add("enc", nn.linear(ctx, "net.enc", 4, 8))
  parts.enc:freeze()
  parts.fc1 = net:add("fc1", nn.linear(ctx, "net.fc1", 8, 16))
  parts.fc2 = net:add("fc2", nn.linear(ctx, "net.fc2", 16, 1))
  parts.aux = net:add("aux", nn.module(ctx, "net.aux"))
  parts.aux:param("weight", {3, 3}, {init = "normal", std = 1})
  parts.aux:param("bias", {3}, {init = "normal", std = 1, no_decay = true})
  return net, parts
end

-- bucket: a batch size (number); opts.nan_input adds an input "c" [1] whose log enters the loss through fc2.bias
local function make_build(parts, opts)
  opts = opts or {}
  return function(g, bucket)
    local B = bucket
    local x = g:input("x", {B, 4})
    local y = g:input("y", {B, 1})
    local h = parts.enc:forward(g, x):tanh()
    h = parts.fc1:forward(g, h):relu()
    local out = parts.fc2:forward(g, h)
    local d = out - y
    local mse = (d * d):mean()
    local zero = (parts.aux:p(g, "weight"):sum_all() + parts.aux:p(g, "bias"):sum_all()):scale(0)
    local loss = mse + zero
    local inputs = {x = x, y = y}
    if opts.nan_input then
      local c = g:input("c", {1})
      inputs.c = c
      loss = loss + parts.fc2:p(g, "bias"):sum_all() * c:log()
    end
    if opts.loss_scale then loss = loss:scale(opts.loss_scale) end
    return {loss = loss, outputs = {mse = mse}, inputs = inputs}
  end
end

-- deterministic data: sample i of stream `seed`
local function lcg(seed)
  local s = (seed * 7919 + 17) % 2147483647
  return function()
    s = (16807 * s) % 2147483647
    return s / 2147483647 * 2 - 1
  end
end
local function make_batch(seed, B)
  local r = lcg(seed)
  local x, y = {}, {}
  for i = 1, B do
    local a, b, c, d = r(), r(), r(), r()
    x[#x + 1], x[#x + 2], x[#x + 3], x[#x + 4] = a, b, c, d
    y[i] = 0.5 * a - b + 0.8 * c * d
  end
  return x, y
end
local function half(t, n, first)
  local r = {}
  local lo = first and 1 or (#t / 2 + 1)
  for i = lo, lo + #t / 2 - 1 do r[#r + 1] = t[i] end
  return r
end

local function read_var(ctx, name) return (assert(ctx:find_var(name), name):read()) end
local function f32(x) return tonumber(ffi.new("float", x)) end

---------------------------------------------------------------------------------------------------- tests
test("cosine / linear / constant schedules against the closed form (HF)", function()
  local s = schedule.new{name = "cosine", lr = 1e-3, steps = 100, warmup_ratio = 0.1}
  assert(s.warmup == 10, "warmup steps " .. s.warmup)
  for k = 0, 99 do
    local want
    if k < 10 then want = 1e-3 * k / 10
    else want = 1e-3 * 0.5 * (1 + math.cos(math.pi * (k - 10) / 90)) end
    assert(math.abs(s:lr(k) - want) < 1e-15, string.format("cosine lr(%d) = %.17g, want %.17g", k, s:lr(k), want))
  end
  assert(s:lr(0) == 0 and s:lr(10) == 1e-3, "warmup start 0 and peak at the end of warmup")
  -- the paper's run: 234 steps, 3 % warmup -> ceil(7.02) = 8 warmup steps (HF get_warmup_steps)
  assert(schedule.new{name = "cosine", lr = 1, steps = 234}.warmup == 8)
  assert(schedule.new{name = "cosine", lr = 1, steps = 234, warmup_steps = 5}.warmup == 5)
  local l = schedule.new{name = "linear", lr = 2, steps = 50, warmup_steps = 10}
  assert(l:lr(5) == 1 and math.abs(l:lr(30) - 2 * 20 / 40) < 1e-15 and l:lr(50) == 0)
  local c = schedule.new{name = "constant", lr = 3, steps = 10}
  assert(c.warmup == 0 and c:lr(0) == 3 and c:lr(9) == 3)
  local cw = schedule.new{name = "constant", lr = 3, steps = 10, warmup_steps = 2}
  assert(cw:lr(1) == 1.5 and cw:lr(2) == 3)
end)

test("loss goes down; metrics.jsonl has the HF keys; learning_rate follows the schedule", function()
  local ctx = pv.context{seed = 1, threads = 2}
  local net, parts = make_model(ctx)
  local dir = TMP .. "/fit"
  local tr = train.new{ctx = ctx, model = net, build = make_build(parts), lr = 1e-2, schedule = "cosine",
    warmup_steps = 5, steps = 120, threads = 2, out_dir = dir, save_every = 0, log_every = 10, steps_per_epoch = 40,
    progress = false, quiet = true}
  local data = {}
  for i = 1, 8 do
    local x, y = make_batch(i, 16)
    data[i] = {bucket = 16, feeds = {x = x, y = y}}
  end
  local i, losses, lrs = 0, {}, {}
  local summary = tr:fit(function()
    i = i + 1
    return data[(i - 1) % #data + 1]
  end, {on_step = function(m)
    losses[#losses + 1] = m.loss
    lrs[#lrs + 1] = m.learning_rate
  end})
  assert(#losses == 120 and tr.step_count == 120)
  local first = (losses[1] + losses[2] + losses[3] + losses[4] + losses[5] + losses[6] + losses[7] + losses[8]) / 8
  local last = 0
  for k = 113, 120 do last = last + losses[k] / 8 end
  print(string.format("      loss %.4f -> %.4f", first, last))
  assert(last < 0.3 * first, string.format("loss did not go down enough: %.4f -> %.4f", first, last))
  for k = 1, 120 do
    assert(lrs[k] == tr.sched:lr(k - 1), "learning_rate of step " .. k)
  end
  assert(lrs[1] == 0, "HF warmup starts at lr 0")
  -- metrics.jsonl
  local lines = {}
  for line in io.lines(dir .. "/metrics.jsonl") do lines[#lines + 1] = json.decode(line) end
  assert(#lines == 13, "12 logged lines + the summary, got " .. #lines)
  local l1 = lines[1]
  for _, k in ipairs {"loss", "grad_norm", "learning_rate", "epoch", "step", "mse"} do
    assert(type(l1[k]) == "number", "metrics line lacks " .. k)
  end
  assert(l1.step == 10 and math.abs(l1.epoch - 0.25) < 1e-12, "step/epoch of the first line")
  local mean = 0
  for k = 1, 10 do mean = mean + losses[k] / 10 end
  assert(math.abs(l1.loss - mean) < 1e-6 * math.max(1, mean), "logged loss is the mean over the interval")
  assert(lines[13].train_runtime and lines[13].train_loss, "the summary line")
  -- the final checkpoint
  assert(ckpt.find_latest(dir) == dir .. "/checkpoint-120", "final checkpoint")
  assert(summary.step == 120)
  -- the profile is available
  tr:set_profiling(true)
  tr:step(data[1])
  assert(tr:profile():find("adamw"), "profile lists the adamw op")
end)

test("decay / no-decay groups, lr_mult by prefix, frozen modules get no state", function()
  local ctx = pv.context{seed = 2, threads = 2}
  local net, parts = make_model(ctx)
  local LR, WD = 0.01, 0.1
  local tr = train.new{ctx = ctx, model = net, build = make_build(parts), lr = LR, schedule = "constant", steps = 10,
    weight_decay = WD, lr_mult = {["net.aux"] = 2, ["net"] = 1}, threads = 2, quiet = true}
  -- groups: fc weights, fc biases, aux weight (x2), aux bias (x2, no decay); enc (frozen) absent
  local groups = tr.opt:groups()
  assert(#groups == 4, "4 groups, got " .. #groups)
  for _, e in ipairs(tr.opt.entries) do assert(not e.name:match("^net%.enc"), "frozen param in the optimizer") end
  assert(ctx:find_var("net.enc.weight.adam_m") == nil and ctx:find_var("net.enc.bias.adam_v") == nil,
    "frozen params have no optimizer state")
  assert(ctx:find_var("net.fc1.weight.adam_m") and ctx:find_var("net.fc1.weight.adam_v"), "state vars by name")
  assert(ctx:find_var("net.fc1.weight.grad_acc") == nil, "no accumulators with accum = 1")
  local e = tr.opt.by_name["net.aux.weight"]
  assert(e.lr_scale == 2 and e.wd == WD, "aux weight group")
  assert(tr.opt.by_name["net.aux.bias"].wd == 0 and tr.opt.by_name["net.fc1.bias"].wd == 0, "biases: no decay")
  assert(tr.opt.by_name["net.fc1.weight"].lr_scale == 1, "longest prefix wins")

  local w0, b0 = read_var(ctx, "net.aux.weight"), read_var(ctx, "net.aux.bias")
  local enc0, fc0 = read_var(ctx, "net.enc.weight"), read_var(ctx, "net.fc1.weight")
  local x, y = make_batch(3, 16)
  for step = 1, 2 do
    tr:step{bucket = 16, feeds = {x = x, y = y}}
    local w, b = read_var(ctx, "net.aux.weight"), read_var(ctx, "net.aux.bias")
    -- pv_adamw: decay = (float)(1 - lr_f32 * lr_scale * wd), p <- p * decay; zero grad -> no Adam step
    local decay = f32(1 - f32(LR) * 2 * WD)
    for i = 1, #w do
      local want = f32(w0[i] * decay)
      assert(w[i] == want, string.format("step %d: decayed weight [%d] = %.9g, want %.9g", step, i, w[i], want))
    end
    for i = 1, #b do assert(b[i] == b0[i], "no-decay bias with zero grad changed") end
    w0 = w
  end
  local enc1, fc1 = read_var(ctx, "net.enc.weight"), read_var(ctx, "net.fc1.weight")
  for i = 1, #enc0 do assert(enc1[i] == enc0[i], "frozen var changed") end
  local moved = 0
  for i = 1, #fc0 do if fc1[i] ~= fc0[i] then moved = moved + 1 end end
  assert(moved > #fc0 / 2, "trainable weights should move")
end)

-- gradients of the trainable params at the current values (a separate plan, no update)
local function gradients(ctx, parts, build, bucket, feeds)
  local g = ctx:graph()
  local r = build(g, bucket)
  g:backward(r.loss)
  local nodes = {}
  for _, key in ipairs {"fc1", "fc2", "aux"} do
    for _, p in ipairs(parts[key]:parameters()) do
      local gr = g:grad(g:use(p.var))
      gr:mark_output()
      nodes[p.var.name] = gr
    end
  end
  local plan = g:compile{threads = 2}
  for k, v in pairs(feeds) do plan:write(r.inputs[k], v) end
  plan:run()
  local grads, sq = {}, 0
  for name, node in pairs(nodes) do
    grads[name] = plan:read(node)
    for _, v in ipairs(grads[name]) do sq = sq + v * v end
  end
  return grads, math.sqrt(sq)
end

test("global-norm clipping in the graph: grad_norm output, clipped update", function()
  for _, case in ipairs {{max = 1e-3, clipped = true}, {max = 1e6, clipped = false}, {max = 0, clipped = false}} do
    local ctx = pv.context{seed = 3, threads = 2}
    local net, parts = make_model(ctx)
    local build = make_build(parts)
    local x, y = make_batch(4, 16)
    local feeds = {x = x, y = y}
    local grads, norm = gradients(ctx, parts, build, 16, feeds)
    -- eps large enough that Adam is not scale-invariant: the first step moves p by -lr * g / (|g| + eps)
    local LR, EPS = 0.05, 1e-4
    local tr = train.new{ctx = ctx, model = net, build = build, lr = LR, schedule = "constant", steps = 10, eps = EPS,
      max_grad_norm = case.max, threads = 2, quiet = true}
    local before = {}
    for name in pairs(grads) do before[name] = read_var(ctx, name) end
    local m = tr:step{bucket = 16, feeds = feeds}
    assert(math.abs(m.grad_norm - norm) <= 1e-5 * norm,
      string.format("grad_norm %.9g, want %.9g", m.grad_norm, norm))
    local coef = case.clipped and case.max / norm or 1
    assert((coef < 1) == case.clipped)
    local worst = 0
    for name, gv in pairs(grads) do
      local after = read_var(ctx, name)
      for i = 1, #gv do
        local gc = gv[i] * coef
        local want = -LR * gc / (math.abs(gc) + EPS)
        local got = after[i] - before[name][i]
        local err = math.abs(got - want)
        if err > worst then worst = err end
        assert(err <= 2e-6 * math.max(1, math.abs(before[name][i])) + 1e-4 * math.abs(want),
          string.format("max %g: %s[%d] moved %.9g, want %.9g", case.max, name, i, got, want))
        assert(math.abs(got) <= LR * (1 + 1e-5) + 1e-6, "the update is bounded by lr")
      end
    end
    print(string.format("      max_grad_norm %g: grad_norm %.5f, coef %.3g, worst error %.2e", case.max, norm, coef,
      worst))
  end
end)

test("gradient accumulation k=2 over half batches equals k=1 on the full batch", function()
  local function run(accum)
    local ctx = pv.context{seed = 4, threads = 2}
    local net, parts = make_model(ctx)
    local tr = train.new{ctx = ctx, model = net, build = make_build(parts), lr = 1e-2, schedule = "cosine",
      warmup_steps = 1, steps = 4, accum = accum, max_grad_norm = 0.5, weight_decay = 0.01, threads = 2,
      quiet = true}
    local ms = {}
    for s = 1, 4 do
      local x, y = make_batch(10 + s, 16)
      if accum == 1 then
        ms[s] = tr:step{bucket = 16, feeds = {x = x, y = y}}
      else
        ms[s] = tr:step{{bucket = 8, feeds = {x = half(x, 4, true), y = half(y, 1, true)}},
          {bucket = 8, feeds = {x = half(x, 4, false), y = half(y, 1, false)}}}
      end
    end
    local vals = {}
    for _, v in ipairs(tr.model_vars) do vals[v.name] = v:read() end
    return ms, vals, ctx, tr
  end
  local m1, v1 = run(1)
  local m2, v2, ctx2, tr2 = run(2)
  assert(ctx2:find_var("net.fc1.weight.grad_acc"), "accumulators exist")
  local acc = ctx2:find_var("net.fc1.weight.grad_acc"):read()
  for i = 1, #acc do assert(acc[i] == 0, "accumulators are zeroed after the update") end
  assert(#tr2:plan_list() == 2, "one micro plan (bucket 8) and one update plan")
  local clipped = false
  for s = 1, 4 do
    assert(math.abs(m1[s].loss - m2[s].loss) < 1e-5, string.format("loss %d: %.9g vs %.9g", s, m1[s].loss, m2[s].loss))
    assert(math.abs(m1[s].mse - m2[s].mse) < 1e-5, "mse output averaged")
    assert(math.abs(m1[s].grad_norm - m2[s].grad_norm) < 1e-5 * math.max(1, m1[s].grad_norm),
      string.format("grad_norm %d: %.9g vs %.9g", s, m1[s].grad_norm, m2[s].grad_norm))
    if m1[s].grad_norm > 0.5 then clipped = true end
  end
  assert(clipped, "the test should exercise clipping")
  local worst = 0
  for name, a in pairs(v1) do
    local b = v2[name]
    for i = 1, #a do
      local d = math.abs(a[i] - b[i])
      if d > worst then worst = d end
      assert(d <= 1e-5, string.format("%s[%d]: %.9g vs %.9g", name, i, a[i], b[i]))
    end
  end
  print(string.format("      worst param difference %.2e", worst))
end)

test("NaN loss stops the run naming the step; the last checkpoint stays intact", function()
  local ctx = pv.context{seed = 5, threads = 2}
  local net, parts = make_model(ctx)
  local dir = TMP .. "/nan"
  local tr = train.new{ctx = ctx, model = net, build = make_build(parts, {nan_input = true}), lr = 1e-2,
    schedule = "constant", steps = 6, out_dir = dir, save_every = 1, threads = 2, quiet = true}
  local i = 0
  local snap
  local ok, err = pcall(function()
    tr:fit(function()
      i = i + 1
      local x, y = make_batch(20 + i, 16)
      return {bucket = 16, feeds = {x = x, y = y, c = {i == 3 and -1 or 1}}}
    end, {on_step = function(m, t)
      if m.step == 2 then snap = read_var(ctx, "net.fc2.bias") end
    end})
  end)
  assert(not ok, "the run should stop")
  err = tostring(err)
  print("      error: " .. err)
  assert(err:find("step 3: loss is nan", 1, true), "the message names the step: " .. err)
  assert(err:find(dir .. "/checkpoint-2", 1, true), "the message names the last good checkpoint: " .. err)
  -- the in-memory params are poisoned (grad of fc2.bias is log(-1)), the checkpoint is not
  local now = read_var(ctx, "net.fc2.bias")
  assert(now[1] ~= now[1], "the bad update reached the params")
  local path = ckpt.find_latest(dir)
  assert(path == dir .. "/checkpoint-2", "latest is still checkpoint-2, got " .. tostring(path))
  assert(not ckpt.is_dir(dir .. "/checkpoint-3"), "no checkpoint of the bad step")
  local st = ctx:open_safetensors(path .. "/model.safetensors")
  local v = st:read_table("net.fc2.bias")
  st:close()
  assert(v[1] == snap[1], "checkpoint-2 holds the good state")
  -- the run refuses to continue
  assert(not pcall(function() tr:step({bucket = 16, feeds = {}}) end))
  -- the metrics line of the bad step is logged (loss null)
  local last
  for line in io.lines(dir .. "/metrics.jsonl") do last = json.decode(line) end
  assert(last.step == 3 and (last.loss == nil or last.loss == json.null), "the bad step is logged with a null loss")
end)

test("in-process save / resume is bit-exact (accum 2, clipping, cosine)", function()
  local function make(dir, resume)
    local ctx = pv.context{seed = 6, threads = 2}
    local net, parts = make_model(ctx)
    local tr = train.new{ctx = ctx, model = net, build = make_build(parts), lr = 1e-2, schedule = "cosine",
      warmup_ratio = 0.2, steps = 6, accum = 2, threads = 2, out_dir = dir, save_every = 1, quiet = true,
      resume = resume}
    return tr, ctx
  end
  local function loader(start)
    local idx = start or 0
    return {next = function(self)
      idx = idx + 1
      local x, y = make_batch(40 + idx, 8)
      return {bucket = 8, feeds = {x = x, y = y}}
    end, state = function() return {index = idx} end, set_state = function(self, s) idx = s.index end}
  end
  local a = make(TMP .. "/res_a")
  a:fit(loader())
  local b = make(TMP .. "/res_b")
  local l = loader()
  local n = 0
  b:fit(l, {on_step = function() n = n + 1 return n < 3 end})
  assert(b.step_count == 3)
  local c, cctx = make(TMP .. "/res_b", true)
  assert(c.step_count == 3 and c.resumed_from == TMP .. "/res_b/checkpoint-3", "resumed at step 3")
  assert(c.data_state.index == 6, "data position restored")
  c:fit(loader())
  assert(c.step_count == 6)
  local sa = cctx:open_safetensors(TMP .. "/res_a/checkpoint-6/model.safetensors")
  local sb = cctx:open_safetensors(TMP .. "/res_b/checkpoint-6/model.safetensors")
  for _, name in ipairs(sa:names()) do
    local x, n1 = sa:read(name, "f32")
    local y, n2 = sb:read(name, "f32")
    assert(n1 == n2)
    for k = 0, n1 - 1 do assert(x[k] == y[k], name .. " differs after resume") end
  end
  -- only the last 2 checkpoints are kept
  local names = ckpt.list(TMP .. "/res_b")
  assert(#names == 2 and names[1].step == 5 and names[2].step == 6, "keep the last 2")
end)

test("the toy transformer (pivot.toy) trains through the trainer from a list of param entries", function()
  local toy = require "pivot.toy"
  local cfg = {}
  for k, v in pairs(toy.defaults) do cfg[k] = v end
  local ctx = pv.context{seed = 5, threads = 2}
  local p = toy.params(ctx, cfg)
  local entries = {}
  for _, k in ipairs(p.order) do
    entries[#entries + 1] = {name = p[k].name, var = p[k], no_decay = #p[k].shape == 1}
  end
  local tr = train.new{ctx = ctx, model = entries, lr = 1e-2, schedule = "cosine", warmup_steps = 10, steps = 150,
    beta2 = 0.98, weight_decay = 0.01, threads = 2, quiet = true,
    build = function(g)
      local loss, ids, labels = toy.forward(g, p, cfg)
      return {loss = loss, inputs = {ids = ids, labels = labels}}
    end}
  assert(tr.opt.by_name["block.norm1"].wd == 0 and tr.opt.by_name["block.attn.q"].wd == 0.01)
  local next_int = toy.rng(77)
  local first, last
  tr:fit(function()
    local ids, labels = toy.batch(cfg, next_int)
    return {feeds = {ids = ids, labels = labels}}
  end, {on_step = function(m)
    first = first or m.loss
    last = m.loss
  end})
  print(string.format("      toy loss %.4f -> %.4f", first, last))
  assert(first > 1.5 and last < 0.2, "the toy task should be learned")
end)

ckpt.rmtree(TMP)
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then error(failed .. " test(s) failed", 0) end
