-- pivot.models.siglip2: the SigLIP2 NaFlex vision tower (transformers' Siglip2VisionModel).
--
--   local siglip2 = require "pivot.models.siglip2"
--   local tower = siglip2.new(ctx, "vision", cfg, opts)        -- opts as in pivot.models.siglip
--   local pix = g:input("pixel_values", {B, N, C*P*P})          -- pre-patchified, (row, col, channel) order
--   local mask = g:input("pixel_attention_mask", {B, N}, "i64") -- 1 valid, 0 padding
--   local out = tower:forward(g, pix, mask, {{6, 10}, {8, 8}})  -- spatial_shapes (rows, cols) in patches
--   plan:run(out.feeds)                                         -- writes the position-resize constants
--
-- The position-embedding table [G*G, D] (G = sqrt(num_patches), row-major grid) is resized for each image to
-- its (h, w) with bilinear interpolation, align_corners=False and antialias=True, as torch does. The resize is
-- a constant matrix Wimg [h*w, G*G] computed here (host side, small) and applied in the graph as a matmul
-- on the table, so the table gets gradients. Padded rows get resized[0]. The matrices are fed through the
-- graph input out.pos_resize [B, N, G*G]; out.feeds = {[out.pos_resize] = data} must be written before a run
-- (plan:run(out.feeds) or plan:write). spatial_shapes are host-side (shapes are static per plan).
--
-- The attention mask applies to keys only, in the encoder and the MAP head; padded query rows are computed
-- as usual (they are part of last_hidden_state).
local pv = require "pivot"
local nn = require "pivot.nn"
local hf = require "pivot.hf"
local siglip = require "pivot.models.siglip"

local M = {}

local function ffi_new_float(n) return pv.ffi.new("float[?]", n > 0 and n or 1) end

local Tower = setmetatable({}, {__index = nn.Module})
Tower.__index = Tower
M.Tower = Tower

-- torch's antialiased linear interpolation weights (upsample_bilinear2d_aa, align_corners=False) for one
-- axis: returns a table W[o][i] (1-based) of size out x in.
function M.aa_weights(n_in, n_out)
  local scale = n_in / n_out
  local support = math.max(scale, 1)
  local invscale = scale >= 1 and 1 / scale or 1
  local W = {}
  for o = 0, n_out - 1 do
    local row = {}
    for i = 1, n_in do row[i] = 0 end
    local center = scale * (o + 0.5)
    local function trunc(x) return x >= 0 and math.floor(x) or math.ceil(x) end
    local xmin = math.max(trunc(center - support + 0.5), 0)
    local xmax = math.min(trunc(center + support + 0.5), n_in)
    local total = 0
    for j = xmin, xmax - 1 do
      local w = 1 - math.abs((j - center + 0.5) * invscale)
      if w < 0 then w = 0 end
      row[j + 1] = w
      total = total + w
    end
    if total > 0 then
      for j = xmin, xmax - 1 do row[j + 1] = row[j + 1] / total end
    end
    W[o + 1] = row
  end
  return W
end

-- The position resize matrix of one image, written into buf (a float/double cdata) at offset off:
-- rows r = y*w + x (r < h*w) get Wy[y] ⊗ Wx[x] over the grid G x G; rows h*w .. N-1 repeat row 0.
function M.fill_resize(buf, off, G, h, w, N)
  local Wy, Wx = M.aa_weights(G, h), M.aa_weights(G, w)
  local GG = G * G
  if h * w > N then pv.raise(string.format("siglip2: spatial shape (%d, %d) has %d patches, more than N = %d", h, w,
    h * w, N)) end
  for y = 0, h - 1 do
    local wy = Wy[y + 1]
    for x = 0, w - 1 do
      local wx = Wx[x + 1]
      local base = off + (y * w + x) * GG
      for gy = 0, G - 1 do
        local a = wy[gy + 1]
        for gx = 0, G - 1 do buf[base + gy * G + gx] = a * wx[gx + 1] end
      end
    end
  end
  for r = h * w, N - 1 do
    local base = off + r * GG
    for k = 0, GG - 1 do buf[base + k] = buf[off + k] end
  end
end

-- siglip2.new(ctx, prefix, cfg, opts) -> tower
function M.new(ctx, prefix, cfg, opts)
  opts = opts or {}
  return pv.scope(prefix ~= "" and prefix or "siglip2", function()
    local c = siglip.read_cfg(cfg, "siglip2")
    local p = siglip.plan_layers(c, opts)
    local G = math.floor(math.sqrt(c.num_patches) + 0.5)
    if G * G ~= c.num_patches then
      pv.raise(string.format("config.json: field 'num_patches' = %d is not a square", c.num_patches))
    end
    local tower = nn.module(ctx, prefix or "", Tower)
    tower.kind, tower.cfg, tower.prefix, tower.grid = "siglip2", c, prefix or "", G
    local D, C, P = c.hidden_size, c.num_channels, c.patch_size
    local emb = nn.module(ctx, tower:path("embeddings"))
    tower:add("embeddings", emb)
    emb.patch_embedding = emb:add("patch_embedding", nn.linear(ctx, emb:path("patch_embedding"), C * P * P, D))
    local pos = nn.module(ctx, emb:path("position_embedding"))
    emb:add("position_embedding", pos)
    pos:param("weight", {c.num_patches, D}, {init = "normal", std = 1 / math.sqrt(D), no_decay = true})
    emb.position_embedding = pos
    tower.embeddings = emb
    siglip.build_common(ctx, tower, c, p)
    return tower
  end)
end

local function shapes_of(spatial_shapes, B)
  if type(spatial_shapes) ~= "table" then
    pv.raise("siglip2: spatial_shapes must be a Lua table of {h, w} (or a flat {h1, w1, h2, w2, ...})")
  end
  local r = {}
  if type(spatial_shapes[1]) == "table" then
    for i = 1, #spatial_shapes do r[i] = {spatial_shapes[i][1], spatial_shapes[i][2]} end
  else
    for i = 1, #spatial_shapes / 2 do r[i] = {spatial_shapes[2 * i - 1], spatial_shapes[2 * i]} end
  end
  if #r ~= B then pv.raise(string.format("siglip2: %d spatial shapes for a batch of %d", #r, B)) end
  return r
end

-- tower:position_resize(spatial_shapes, N) -> float cdata [B * N * G*G] (the constants of out.pos_resize)
function Tower:position_resize(spatial_shapes, N)
  local B = #spatial_shapes
  local G = self.grid
  local buf = ffi_new_float(B * N * G * G)
  for b = 1, B do
    local s = spatial_shapes[b]
    M.fill_resize(buf, (b - 1) * N * G * G, G, s[1], s[2], N)
  end
  return buf
end

-- tower:embed(g, pixel_values [B, N, C*P*P], spatial_shapes) -> x [B, N, D], pos_resize input, its data
function Tower:embed(g, pixel_values, spatial_shapes)
  local emb = self.embeddings
  return emb:scope(function()
    local c = self.cfg
    local sh = pixel_values.shape
    local CPP = c.num_channels * c.patch_size * c.patch_size
    if #sh ~= 3 or sh[3] ~= CPP then
      pv.raise(string.format("pixel_values: expected [B, N, %d] (patches of %d x %d x %d), got %s", CPP,
        c.patch_size, c.patch_size, c.num_channels, hf.shape_str(sh)))
    end
    local B, N = sh[1], sh[2]
    local shapes = shapes_of(spatial_shapes, B)
    local G = self.grid
    local x = emb.patch_embedding:forward(g, pixel_values)
    local name = "pos_resize"
    if emb.name ~= "" then name = emb.name .. "." .. name end
    local rs = g:input(name, {B, N, G * G})
    local data = self:position_resize(shapes, N)
    local pos = rs:matmul(emb.position_embedding:p(g, "weight")) -- [B, N, D]
    return x + pos, rs, data
  end)
end

-- tower:forward(g, pixel_values [B, N, C*P*P], pixel_attention_mask [B, N] (any dtype) or nil, spatial_shapes)
-- -> {hidden_states, features, last_hidden_state, pooler_output, pos_resize, feeds}
function Tower:forward(g, pixel_values, pixel_attention_mask, spatial_shapes)
  local x, rs, data = self:embed(g, pixel_values, spatial_shapes)
  local mask = siglip.key_mask(pixel_attention_mask)
  local out = siglip.run_common(self, g, x, mask, {})
  out.pos_resize = rs
  out.feeds = {[rs] = data}
  return out
end

return M
