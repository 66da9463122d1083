-- pivot.objectives: causal-LM log-probs, the SFT loss, DPO and its variants, and TRL's metric set.
--
-- All functions build graph nodes. Labels are id tensors (i32/i64) with -100 (IGNORE) on positions that are
-- not predicted (image, prompt, padding). The HF shift applies: logits[:, t] predicts labels[:, t+1].
--
--   local obj = require "pivot.objectives"
--   local lp  = obj.token_logps(g, logits, labels)          -- [B, L-1], 0 where labels[t+1] == -100
--   local seq = obj.sequence_logps(g, logits, labels)       -- [B], summed over response tokens (no normalisation)
--   local sft = obj.sft_loss(g, logits, labels)             -- [1] token-weighted mean CE over the batch
--   local d   = obj.dpo(g, {policy_chosen = pc, policy_rejected = pr, reference_chosen = rc,
--                           reference_rejected = rr, beta = 0.1, loss_type = "sigmoid"})
--   d.loss                                                  -- [1]
--   d.metrics["rewards/chosen"] ...                         -- [1] nodes, TRL names; obj.mark_metrics(d)
--   local values = obj.read_metrics(plan, d)                -- {["rewards/chosen"] = number, ...}
--
-- Implementation note: instead of slicing the logits (a copy of [B, L-1, V]), the labels are shifted left by one
-- and padded with -100, so token_logprob runs on the full logits [B*L, V] and the last position is ignored. The
-- values are the same as HF's logits[:, :-1] / labels[:, 1:].
local pv = require "pivot"

local M = {}
M.IGNORE = -100

local function shape_str(t) return "[" .. table.concat(t.shape, ", ") .. "]" end

local function check_pair(logits, labels, fn)
  local ls, ys = logits.shape, labels.shape
  if #ls ~= 3 or #ys ~= 2 or ls[1] ~= ys[1] or ls[2] ~= ys[2] then
    pv.raise(string.format("%s: logits %s must be [B, L, V] and labels %s [B, L]", fn, shape_str(logits),
      shape_str(labels)))
  end
  if labels.dtype ~= "i32" and labels.dtype ~= "i64" then
    pv.raise(fn .. ": labels must be i32 or i64, got " .. labels.dtype)
  end
  return ls[1], ls[2], ls[3]
end

-- labels [B, L] -> [B, L] with out[:, t] = labels[:, t+1] and out[:, L-1] = -100
function M.shift_labels(g, labels, ignore)
  ignore = ignore or M.IGNORE
  local B, L = labels.shape[1], labels.shape[2]
  local pad = g:fill(ignore, {B, 1}):cast(labels.dtype)
  if L == 1 then return pad end
  return labels:slice(1, 1, L):concat(pad, 1)
end

-- Per-token log-probs of the next label: [B, L-1] (0 where the label is ignored).
-- opts.full = true returns [B, L] instead (last column 0), which saves a slice.
function M.token_logps(g, logits, labels, opts)
  opts = opts or {}
  return pv.scope("token_logps", function()
    local B, L, V = check_pair(logits, labels, "token_logps")
    local y = M.shift_labels(g, labels, opts.ignore_index):reshape(B * L)
    local lp = logits:reshape(B * L, V):token_logprob(y, opts.ignore_index or M.IGNORE):reshape(B, L)
    if opts.full or L == 1 then return lp end
    return lp:slice(1, 0, L - 1)
  end)
end

-- 1/0 mask of the predicted (shifted) labels: [B, L] (last column 0)
function M.response_mask(g, labels, ignore)
  return M.shift_labels(g, labels, ignore):label_mask(ignore or M.IGNORE)
end

-- Sequence log-probs [B]: sum over response tokens (TRL / PIVOT). opts.average = true divides by the number of
-- response tokens of each sequence (TRL's ipo and the length-normalised variants).
function M.sequence_logps(g, logits, labels, opts)
  opts = opts or {}
  return pv.scope("sequence_logps", function()
    local lp = M.token_logps(g, logits, labels, {full = true, ignore_index = opts.ignore_index})
    local s = lp:sum(1)
    if opts.average then s = s / M.response_mask(g, labels, opts.ignore_index):sum(1) end
    return s
  end)
end

-- SFT loss [1]: sum of -log p over all response tokens of the batch / their count (HF causal-LM loss with
-- num_items_in_batch; equal to F.cross_entropy(..., ignore_index=-100) on the shifted batch).
-- Returns loss, token count node.
function M.sft_loss(g, logits, labels, opts)
  opts = opts or {}
  return pv.scope("sft_loss", function()
    local lp = M.token_logps(g, logits, labels, {full = true, ignore_index = opts.ignore_index})
    local count = M.response_mask(g, labels, opts.ignore_index):sum_all()
    return -(lp:sum_all() / count), count
  end)
end

---------------------------------------------------------------------------------------------------- DPO
local LOSS_TYPES = {sigmoid = true, ipo = true, hinge = true, bco_pair = true, mpo = true}
M.loss_types = {"sigmoid", "ipo", "hinge", "bco_pair", "mpo"}
M.mpo_weights = {sigmoid = 0.8, bco_pair = 0.2, sft = 1.0} -- InternVL2-MPO

local function as_node(g, x, B, what)
  if type(x) == "number" then return g:fill(x, {1}) end
  if x == nil then pv.raise("dpo: " .. what .. " is required") end
  return x
end

-- Per-pair DPO losses [B] for one loss type (without the batch mean).
--   h = (pc - rc) - (pr - rr), b = beta
--   sigmoid:  -(1-eps) logsigmoid(b h) - eps logsigmoid(-b h)          (eps = label_smoothing)
--   ipo:      (h - 1/(2 b))^2                                            (TRL feeds length-averaged logps)
--   hinge:    relu(1 - b h)
--   bco_pair: -logsigmoid(b Δc - delta) - logsigmoid(-(b Δr - delta))   (Δc = pc - rc, Δr = pr - rr)
-- delta is the reward shift of TRL 0.9's bco_pair (a running mean of the batch-mean rewards, detached); pass it
-- as a number or a [1] input node written per step (see M.running_mean). Without delta, it is 0, as in current TRL.
function M.pair_losses(g, kind, d, beta, opts)
  opts = opts or {}
  if kind == "sigmoid" then
    local z = d.h:scale(beta)
    local eps = opts.label_smoothing or 0
    local l = -(z:logsigmoid())
    if eps ~= 0 then l = l:scale(1 - eps) - (-z):logsigmoid():scale(eps) end
    return l
  elseif kind == "ipo" then
    return (d.h:add_scalar(-1 / (2 * beta))):square()
  elseif kind == "hinge" then
    return (1 - d.h:scale(beta)):relu()
  elseif kind == "bco_pair" then
    local rc, rr = d.dc:scale(beta), d.dr:scale(beta)
    local delta = opts.delta
    if delta ~= nil then
      delta = as_node(g, delta, nil, "delta")
      rc, rr = rc - delta, rr - delta
    end
    return -(rc:logsigmoid()) - (-rr):logsigmoid()
  end
  pv.raise("dpo: unknown loss type '" .. tostring(kind) .. "'")
end

-- obj.dpo(g, o) -> {loss = [1], losses = {[type] = [1] batch means}, rewards_chosen = [B], rewards_rejected = [B],
--                   h = [B], metrics = {TRL name -> [1] node}}
--  o.policy_chosen, o.policy_rejected: [B] sequence log-probs of the policy (graph nodes)
--  o.reference_chosen, o.reference_rejected: [B] of the reference: from a frozen reference model in the same graph,
--      or input nodes holding cached reference log-probs (M.reference_inputs)
--  o.beta (0.1), o.loss_type ("sigmoid" | "ipo" | "hinge" | "bco_pair" | "mpo", or a list of types with
--      o.weights {type = w}), o.label_smoothing (sigmoid), o.delta (bco_pair reward shift: number or [1] node)
--  o.sft_loss: [1] node, required by "mpo" (or when "sft" is in the weights); o.weights for mpo default to
--      {sigmoid = 0.8, bco_pair = 0.2, sft = 1.0}.
--  o.scale: a multiplier of the final loss (e.g. TRL's dpo_alpha), default 1.
function M.dpo(g, o)
  return pv.scope("dpo", function()
    local beta = o.beta or 0.1
    local pc = as_node(g, o.policy_chosen, nil, "policy_chosen")
    local pr = as_node(g, o.policy_rejected, nil, "policy_rejected")
    local rc = as_node(g, o.reference_chosen, nil, "reference_chosen")
    local rr = as_node(g, o.reference_rejected, nil, "reference_rejected")
    for name, t in pairs {policy_chosen = pc, policy_rejected = pr, reference_chosen = rc, reference_rejected = rr} do
      if t.ndim ~= 1 then pv.raise(name .. ": expected [B] log-probs, got " .. shape_str(t)) end
    end
    local d = {dc = pc - rc, dr = pr - rr}
    d.h = d.dc - d.dr
    -- which losses, with which weights
    local lt = o.loss_type or "sigmoid"
    local weights = {}
    if type(lt) == "table" then
      for _, k in ipairs(lt) do weights[k] = (o.weights and o.weights[k]) or 1 end
    elseif lt == "mpo" then
      for k, w in pairs(o.weights or M.mpo_weights) do weights[k] = w end
    else
      if not LOSS_TYPES[lt] then
        pv.raise(string.format("unknown loss_type '%s' (expected one of %s)", tostring(lt),
          table.concat(M.loss_types, ", ")))
      end
      weights[lt] = 1
    end
    local order = {"sigmoid", "ipo", "hinge", "bco_pair", "sft"}
    local losses, total = {}, nil
    for _, k in ipairs(order) do
      local w = weights[k]
      if w ~= nil then
        local l
        if k == "sft" then
          if not o.sft_loss then pv.raise("loss type '" .. tostring(lt) .. "' needs o.sft_loss (the SFT loss node)") end
          l = o.sft_loss
        else
          l = M.pair_losses(g, k, d, beta, o):mean()
        end
        losses[k] = l
        local term = w == 1 and l or l:scale(w)
        total = total and (total + term) or term
      end
    end
    for k in pairs(weights) do
      if not losses[k] then pv.raise("unknown loss type '" .. tostring(k) .. "' in the weights") end
    end
    if o.scale and o.scale ~= 1 then total = total:scale(o.scale) end
    local r = {loss = total, losses = losses, h = d.h, beta = beta}
    r.rewards_chosen = d.dc:scale(beta)
    r.rewards_rejected = d.dr:scale(beta)
    r.policy_chosen, r.policy_rejected, r.reference_chosen, r.reference_rejected = pc, pr, rc, rr
    r.metrics = M.metrics(g, r)
    return r
  end)
end

-- TRL's metric nodes ([1] each) from a dpo() result: rewards/chosen, rewards/rejected, rewards/accuracies,
-- rewards/margins, logps/chosen, logps/rejected (batch means), plus ref_logps/* and loss.
-- rewards/accuracies is mean(r_c > r_r), computed as relu(m) / (|m| + 1e-30) (exactly 0 for m <= 0 and 1 for
-- m > 1e-22); read_metrics recomputes it exactly from the per-pair rewards.
function M.metrics(g, r)
  local m = r.rewards_chosen - r.rewards_rejected
  local acc = m:relu() / (m:abs():add_scalar(1e-30))
  return {
    ["rewards/chosen"] = r.rewards_chosen:mean(),
    ["rewards/rejected"] = r.rewards_rejected:mean(),
    ["rewards/accuracies"] = acc:mean(),
    ["rewards/margins"] = m:mean(),
    ["logps/chosen"] = r.policy_chosen:mean(),
    ["logps/rejected"] = r.policy_rejected:mean(),
    ["ref_logps/chosen"] = r.reference_chosen:mean(),
    ["ref_logps/rejected"] = r.reference_rejected:mean(),
    loss = r.loss,
  }
end
M.metric_names = {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
  "logps/rejected"}

-- Marks every metric node and the per-pair rewards of a dpo() result as outputs (before compiling).
function M.mark_metrics(r)
  for _, t in pairs(r.metrics) do t:mark_output() end
  r.rewards_chosen:mark_output()
  r.rewards_rejected:mark_output()
  for k, t in pairs(r.losses) do t:mark_output() end
  return r
end

-- Reads the metrics after a run -> {name = number}. Includes "losses/<type>" for each loss term.
-- rewards/accuracies is computed on the host from the per-pair rewards (exact strict comparison).
function M.read_metrics(plan, r)
  local out = {}
  for k, t in pairs(r.metrics) do out[k] = plan:item(t) end
  local ok, rc = pcall(plan.read, plan, r.rewards_chosen)
  local ok2, rr = pcall(plan.read, plan, r.rewards_rejected)
  if ok and ok2 then
    local n = 0
    for i = 1, #rc do if rc[i] > rr[i] then n = n + 1 end end
    out["rewards/accuracies"] = n / #rc
  end
  for k, t in pairs(r.losses or {}) do
    local ok3, v = pcall(plan.item, plan, t)
    if ok3 then out["losses/" .. k] = v end
  end
  return out
end

-- Input nodes for cached reference log-probs: returns chosen [B], rejected [B] (f32 inputs named
-- "ref_chosen_logps" / "ref_rejected_logps"; write them per step).
function M.reference_inputs(g, B, prefix)
  prefix = prefix or ""
  return g:input(prefix .. "ref_chosen_logps", {B}), g:input(prefix .. "ref_rejected_logps", {B})
end

-- A host-side running mean of the batch-mean rewards (TRL 0.9's RunningMoments for bco_pair's delta).
-- rm:update(rewards_chosen_list, rewards_rejected_list) folds in one batch; rm.mean is the current delta.
-- Typical use with a static plan: write rm.mean into the delta input before the step and update it with the
-- step's read rewards afterwards (a one-step lag relative to TRL, which includes the current batch).
function M.running_mean()
  local rm = {mean = 0, count = 0}
  function rm.update(self, a, b)
    local s, n = 0, 0
    for _, t in ipairs {a, b or {}} do
      for i = 1, #t do s, n = s + t[i], n + 1 end
    end
    if n == 0 then return self.mean end
    -- TRL 0.9's bco_pair calls RunningMoments.update with the batch-mean reward, a single value: every batch
    -- counts once, whatever its size
    self.count = self.count + 1
    self.mean = self.mean + (s / n - self.mean) / self.count
    return self.mean
  end
  return rm
end

return M
