-- pivot.models.projector: LLaVA's `mlp2x_gelu` multimodal projector.
--
--   local projector = require "pivot.models.projector"
--   local p = projector.new(ctx, "projector", 1152, 1536, 1536)  -- Linear(din, dh) -> GELU (erf) -> Linear(dh, dout)
--   local y = p:forward(g, x)                                     -- x [.., din] -> [.., dout]
--
-- Var names: <prefix>.0.weight [dh, din], <prefix>.0.bias, <prefix>.2.weight [dout, dh], <prefix>.2.bias (the
-- indices of nn.Sequential(Linear, GELU, Linear); LLaVA checkpoints hold them under model.mm_projector.*).
-- New vars are initialised as torch's nn.Linear: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
local pv = require "pivot"
local nn = require "pivot.nn"

local M = {}

local Projector = setmetatable({}, {__index = nn.Module})
Projector.__index = Projector
M.Projector = Projector

local function check_dim(v, what)
  if type(v) ~= "number" or v < 1 or v ~= math.floor(v) then
    pv.raise("projector: " .. what .. " must be a positive integer, got " .. tostring(v))
  end
end

function M.new(ctx, prefix, din, dhidden, dout)
  prefix = prefix or "projector"
  dout = dout or dhidden
  check_dim(din, "din"); check_dim(dhidden, "dhidden"); check_dim(dout, "dout")
  local self = nn.module(ctx, prefix, Projector)
  local function lin(key, a, b)
    local bound = 1 / math.sqrt(a)
    local m = nn.linear(ctx, self:path(key), a, b, {bias = false})
    -- the bias is created with torch's uniform init (an existing var keeps its values); the weight is re-drawn
    -- uniform below when it is new
    m:param("bias", {b}, {init = "uniform", bound = bound, no_decay = true})
    return self:add(key, m)
  end
  local existed = ctx:find_var(self:path("0.weight")) ~= nil
  self.fc1 = lin("0", din, dhidden)
  self.fc2 = lin("2", dhidden, dout)
  if not existed then
    self.fc1._pmap.weight.var:init_uniform(-1 / math.sqrt(din), 1 / math.sqrt(din))
    self.fc2._pmap.weight.var:init_uniform(-1 / math.sqrt(dhidden), 1 / math.sqrt(dhidden))
  end
  self.din, self.dhidden, self.dout = din, dhidden, dout
  return self
end

function Projector:forward(g, x)
  return pv.scope(self.name ~= "" and self.name or "projector", function()
    local s = x.shape
    if s[#s] ~= self.din then
      pv.raise(string.format("input [%s]: last dimension must be %d", table.concat(s, ", "), self.din))
    end
    return self.fc2:forward(g, self.fc1:forward(g, x):gelu_erf())
  end)
end

return M
