-- pivot.toy: a tiny decoder-only transformer trained on a toy task, the smallest end-to-end use of the
-- binding (shared by recipes/toy.lua and tests/lua/test_toy_train.lua).
--
-- Task: each sequence repeats a random pattern of `period` tokens (vocab `vocab`); the model predicts the
-- next token. The first `period` targets are unpredictable and ignored (label -100); the rest are a copy
-- from `period` positions back, which one causal attention layer learns. Chance loss is ln(vocab).
--
-- Model: token embedding + learned positions, one pre-norm block (single-head causal attention from
-- matmul/softmax, a SiLU MLP), a final RMSNorm and an LM head tied to the token embedding, the loss from
-- token_logprob. AdamW through pv_adamw with the hyper-parameters in an input tensor written each step.
local pv = require "pivot"

local M = {}

M.defaults = {vocab = 8, period = 4, seq = 16, batch = 16, dim = 32, hidden = 64, steps = 300, lr = 1e-2,
  beta1 = 0.9, beta2 = 0.98, eps = 1e-8, weight_decay = 0.0, warmup = 20, seed = 1, threads = nil, backend = nil}

-- a deterministic generator (Park-Miller minimal standard, exact in doubles)
local function rng(seed)
  local x = (math.floor(seed) % 2147483646) + 1
  return function(n) -- integer in [0, n)
    x = (16807 * x) % 2147483647
    return x % n
  end
end
M.rng = rng

-- one batch: ids [B*T] and labels [B*T] as flat Lua tables
function M.batch(cfg, next_int)
  local ids, labels = {}, {}
  local B, T, P = cfg.batch, cfg.seq, cfg.period
  for b = 0, B - 1 do
    local pat = {}
    for i = 1, P do pat[i] = next_int(cfg.vocab) end
    for t = 0, T - 1 do
      ids[b * T + t + 1] = pat[t % P + 1]
      -- target of position t is the token at t + 1; predictable once a full period was seen
      labels[b * T + t + 1] = (t + 1 >= P and t + 1 < T) and pat[(t + 1) % P + 1] or -100
    end
  end
  return ids, labels
end

local function merge(cfg)
  local c = {}
  for k, v in pairs(M.defaults) do c[k] = v end
  for k, v in pairs(cfg or {}) do c[k] = v end
  return c
end

-- Creates the parameters (vars) in ctx.
function M.params(ctx, cfg)
  local V, D, H, T = cfg.vocab, cfg.dim, cfg.hidden, cfg.seq
  local std = 0.02 * 5
  local p = {
    tok = ctx:var("tok_emb", {V, D}, {init = "normal", std = std}),
    pos = ctx:var("pos_emb", {T, D}, {init = "normal", std = std}),
    n1 = ctx:var("block.norm1", {D}, {init = "ones"}),
    wq = ctx:var("block.attn.q", {D, D}, {init = "normal", std = 1 / math.sqrt(D)}),
    wk = ctx:var("block.attn.k", {D, D}, {init = "normal", std = 1 / math.sqrt(D)}),
    wv = ctx:var("block.attn.v", {D, D}, {init = "normal", std = 1 / math.sqrt(D)}),
    wo = ctx:var("block.attn.o", {D, D}, {init = "normal", std = 1 / math.sqrt(D)}),
    n2 = ctx:var("block.norm2", {D}, {init = "ones"}),
    w1 = ctx:var("block.mlp.up", {H, D}, {init = "normal", std = 1 / math.sqrt(D)}),
    w2 = ctx:var("block.mlp.down", {D, H}, {init = "normal", std = 1 / math.sqrt(H)}),
    nf = ctx:var("norm_f", {D}, {init = "ones"}),
  }
  p.order = {"tok", "pos", "n1", "wq", "wk", "wv", "wo", "n2", "w1", "w2", "nf"}
  return p
end

-- Builds the forward graph: returns loss, ids, labels (inputs) and the param nodes.
function M.forward(g, p, cfg)
  local B, T, V, D = cfg.batch, cfg.seq, cfg.vocab, cfg.dim
  local ids = g:input("ids", {B, T}, "i32")
  local labels = g:input("labels", {B * T}, "i32")
  local n = {}
  for _, k in ipairs(p.order) do n[k] = g:param(p[k]) end
  local x = pv.scope("embed", function() return n.tok:embedding(ids) + n.pos end) -- [B, T, D]
  x = pv.scope("block.attn", function()
    local h = x:rms_norm(n.n1)
    local q, k, v = h:linear(n.wq), h:linear(n.wk), h:linear(n.wv)
    local att = q:matmul(k, false, true):softmax{scale = 1 / math.sqrt(D), causal = true} -- [B, T, T]
    return x + att:matmul(v):linear(n.wo)
  end)
  x = pv.scope("block.mlp", function()
    local h = x:rms_norm(n.n2)
    return x + h:linear(n.w1):silu():linear(n.w2)
  end)
  local loss = pv.scope("head", function()
    local logits = x:rms_norm(n.nf):linear(n.tok):reshape{B * T, V} -- tied LM head
    local lp = logits:token_logprob(labels, -100)
    return -(lp:sum() / labels:label_mask(-100):sum())
  end)
  loss:set_name("loss")
  return loss, ids, labels, n
end

-- Builds forward + backward + AdamW updates. Returns a table with plan, loss, inputs and the hyper input.
function M.build(ctx, cfg)
  cfg = merge(cfg)
  local p = M.params(ctx, cfg)
  local g = ctx:graph()
  local loss, ids, labels, n = M.forward(g, p, cfg)
  g:backward(loss)
  local hyper = g:input("adamw.hyper", {6})
  for _, k in ipairs(p.order) do
    local var = p[k]
    local m = ctx:var("adamw.m." .. var.name, var.shape)
    local v = ctx:var("adamw.v." .. var.name, var.shape)
    local wd = (#var.shape == 2 and k ~= "tok" and k ~= "pos") and cfg.weight_decay or 0
    g:adamw(n[k], g:grad(n[k]), m, v, hyper, 1, wd)
  end
  loss:mark_output()
  local plan = g:compile{backend = cfg.backend, threads = cfg.threads}
  return {cfg = cfg, graph = g, plan = plan, loss = loss, ids = ids, labels = labels, hyper = hyper, params = p}
end

-- Trains; returns the list of per-step losses. on_step(step, loss) is called after every step.
function M.train(cfg, on_step)
  cfg = merge(cfg)
  local ctx = pv.context{seed = cfg.seed, threads = cfg.threads}
  local m = M.build(ctx, cfg)
  local next_int = rng(cfg.seed * 7919 + 13)
  local losses = {}
  local b1, b2 = cfg.beta1, cfg.beta2
  for step = 1, cfg.steps do
    local ids, labels = M.batch(cfg, next_int)
    local lr = cfg.lr * math.min(1, step / math.max(1, cfg.warmup))
    m.plan:write(m.ids, ids)
    m.plan:write(m.labels, labels)
    m.plan:write(m.hyper, {lr, b1, b2, cfg.eps, 1 - b1 ^ step, 1 - b2 ^ step})
    m.plan:run()
    losses[step] = m.plan:item(m.loss)
    if on_step then on_step(step, losses[step], m) end
  end
  m.ctx = ctx
  return losses, m
end

return M
