-- pivot.models.text_tower: a small text encoder for stage-0 contrastive (SigLIP) pretraining.
--
--   local text_tower = require "pivot.models.text_tower"
--   local t = text_tower.new(ctx, "stage0.text", {vocab = 499, dim = 64, layers = 1, heads = 2, max_len = 48,
--                                                out_dim = 64})
--   local emb = t:forward(g, ids, mask)   -- ids [B, T] (i32/i64, T <= max_len), mask [B, T] f32 (1 = token) -> [B, out_dim]
--
-- Layout: token embedding + learned positions, `layers` pre-LN transformer blocks (bidirectional attention with a
-- key-padding mask, GELU MLP), a final LayerNorm, masked mean pooling over the tokens, and a Linear to out_dim.
-- layers = 0 gives the mean-pool + MLP variant (embeddings -> mean pool -> Linear-GELU -> Linear).
-- Var names: <prefix>.embed.weight, <prefix>.pos.weight, <prefix>.layers.<i>.{ln1,attn.{q,k,v,o},ln2,mlp.{fc1,fc2}}.*,
-- <prefix>.final_ln.*, <prefix>.proj.* (and <prefix>.mlp.* when layers = 0).
local pv = require "pivot"
local nn = require "pivot.nn"

local M = {}

local TextTower = setmetatable({}, {__index = nn.Module})
TextTower.__index = TextTower
M.TextTower = TextTower

M.defaults = {dim = 64, layers = 1, heads = 2, max_len = 48, mlp_ratio = 2, eps = 1e-6}

function M.new(ctx, prefix, cfg)
  cfg = cfg or {}
  prefix = prefix or "text"
  local c = {}
  for k, v in pairs(M.defaults) do c[k] = v end
  for k, v in pairs(cfg) do c[k] = v end
  if type(c.vocab) ~= "number" then pv.raise("text_tower: cfg.vocab (the vocabulary size) is required") end
  c.out_dim = c.out_dim or c.dim
  if c.dim % c.heads ~= 0 then pv.raise(string.format("text_tower: dim %d is not a multiple of heads %d", c.dim, c.heads)) end
  local self = nn.module(ctx, prefix, TextTower)
  self.cfg = c
  local D = c.dim
  local I = c.intermediate or c.mlp_ratio * D
  self.embed = self:add("embed", nn.embedding(ctx, self:path("embed"), c.vocab, D, {std = 0.02}))
  self.pos = self:add("pos", nn.module(ctx, self:path("pos")))
  self.pos:param("weight", {c.max_len, D}, {init = "normal", std = 0.02, no_decay = true})
  self.layers = {}
  for i = 0, c.layers - 1 do
    local L = self:add("layers." .. i, nn.module(ctx, self:path("layers." .. i)))
    L.ln1 = L:add("ln1", nn.layer_norm(ctx, L:path("ln1"), D, c.eps))
    local at = L:add("attn", nn.module(ctx, L:path("attn")))
    for _, k in ipairs {"q", "k", "v", "o"} do at[k] = at:add(k, nn.linear(ctx, at:path(k), D, D)) end
    L.attn = at
    L.ln2 = L:add("ln2", nn.layer_norm(ctx, L:path("ln2"), D, c.eps))
    local mlp = L:add("mlp", nn.module(ctx, L:path("mlp")))
    mlp.fc1 = mlp:add("fc1", nn.linear(ctx, mlp:path("fc1"), D, I))
    mlp.fc2 = mlp:add("fc2", nn.linear(ctx, mlp:path("fc2"), I, D))
    L.mlp = mlp
    self.layers[i + 1] = L
  end
  if c.layers == 0 then
    local mlp = self:add("mlp", nn.module(ctx, self:path("mlp")))
    mlp.fc1 = mlp:add("fc1", nn.linear(ctx, mlp:path("fc1"), D, I))
    mlp.fc2 = mlp:add("fc2", nn.linear(ctx, mlp:path("fc2"), I, D))
    self.mlp = mlp
  end
  self.final_ln = self:add("final_ln", nn.layer_norm(ctx, self:path("final_ln"), D, c.eps))
  self.proj = self:add("proj", nn.linear(ctx, self:path("proj"), D, c.out_dim))
  return self
end

local function block(L, g, x, kmask, H)
  local B, T, D = x.shape[1], x.shape[2], x.shape[3]
  local hd = D / H
  local h = L.ln1:forward(g, x)
  local at = L.attn
  local function heads(t) return t:reshape(B, T, H, hd) end
  local q, k, v = heads(at.q:forward(g, h)), heads(at.k:forward(g, h)), heads(at.v:forward(g, h))
  local o = nn.sdpa(q, k, v, {mask = kmask, scale = 1 / math.sqrt(hd)}):reshape(B, T, D)
  x = x + at.o:forward(g, o)
  local m = L.mlp
  return x + m.fc2:forward(g, m.fc1:forward(g, L.ln2:forward(g, x)):gelu())
end

-- t:forward(g, ids [B, T], mask [B, T] f32 or nil) -> [B, out_dim]
function TextTower:forward(g, ids, mask)
  return pv.scope(self.name ~= "" and self.name or "text", function()
    local c = self.cfg
    local B, T = ids.shape[1], ids.shape[2]
    if T > c.max_len then pv.raise(string.format("ids: %d positions, more than max_len %d", T, c.max_len)) end
    local pos = self.pos:p(g, "weight")
    if T < c.max_len then pos = pos:slice(0, 0, T) end
    local x = self.embed:forward(g, ids) + pos -- [B, T, D]
    local kmask = mask and mask:add_scalar(-1):scale(1e30):reshape(B, 1, 1, T) or nil
    for i, L in ipairs(self.layers) do
      x = pv.scope("layers." .. (i - 1), block, L, g, x, kmask, c.heads)
    end
    if self.mlp then x = x + self.mlp.fc2:forward(g, self.mlp.fc1:forward(g, x):gelu()) end
    x = self.final_ln:forward(g, x)
    local pooled
    if mask then
      local m = mask:reshape(B, T, 1)
      pooled = (x * m):sum(1) / mask:sum(1, true) -- [B, D] / [B, 1]
    else
      pooled = x:mean(1)
    end
    return self.proj:forward(g, pooled)
  end)
end

return M
