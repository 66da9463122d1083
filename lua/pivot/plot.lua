-- pivot.plot: small raster plots written as PNG (pv_png_write), with a built-in 5x7 bitmap font. No dependencies.
--
--   local plot = require "pivot.plot"
--   plot.lines("loss.png", {sft = {{1, 2.3}, {2, 2.1}, ...}, dpo = {...}}, {title = "loss", w = 640, h = 400,
--              xlabel = "step", ylabel = "loss", logy = false, smooth = 0.9})
--   -- series: a table name -> list of {x, y} (drawn in sorted name order), or a list of {name =, points =}
--
--   local c = plot.canvas(w, h, {255, 255, 255})        -- an RGB8 canvas (c.buf: uint8_t[w*h*3], HWC)
--   c:rect(x0, y0, x1, y1, rgb) ; c:line(x0, y0, x1, y1, rgb, width) ; c:text(x, y, "text", rgb, scale)
--   c:blit_rgb(x, y, src_rgb8, sw, sh, scale) ; c:write(path [, ctx])
--   plot.text_width("text", scale), plot.colormap(v) -> r, g, b (v in [0, 1], blue -> red "jet"-like)
--
-- Text: printable ASCII and "±"; other characters are drawn as "?". Coordinates are pixels, y down.
local pv = require "pivot"
local ffi = pv.ffi

local M = {}

---------------------------------------------------------------------------------------------------- font
-- 5x7 glyphs (8 rows: the last is the descender row), '#' = ink. Designed for this file.
local G = {}
local function glyph(ch, rows)
  while #rows < 8 do rows[#rows + 1] = "....." end
  G[ch] = rows
end
glyph(" ", {})
glyph("!", {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."})
glyph('"', {".#.#.", ".#.#.", "....."})
glyph("#", {".....", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", "....."})
glyph("$", {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."})
glyph("%", {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"})
glyph("&", {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"})
glyph("'", {"..#..", "..#..", "....."})
glyph("(", {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."})
glyph(")", {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."})
glyph("*", {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."})
glyph("+", {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."})
glyph(",", {".....", ".....", ".....", ".....", ".....", "..##.", "...#.", "..#.."})
glyph("-", {".....", ".....", ".....", "#####", ".....", ".....", "....."})
glyph(".", {".....", ".....", ".....", ".....", ".....", "..##.", "..##."})
glyph("/", {"....#", "...#.", "...#.", "..#..", ".#...", ".#...", "#...."})
glyph("0", {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."})
glyph("1", {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."})
glyph("2", {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"})
glyph("3", {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."})
glyph("4", {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."})
glyph("5", {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."})
glyph("6", {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."})
glyph("7", {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."})
glyph("8", {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."})
glyph("9", {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."})
glyph(":", {".....", "..##.", "..##.", ".....", "..##.", "..##.", "....."})
glyph(";", {".....", "..##.", "..##.", ".....", "..##.", "...#.", "..#.."})
glyph("<", {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."})
glyph("=", {".....", ".....", "#####", ".....", "#####", ".....", "....."})
glyph(">", {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."})
glyph("?", {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."})
glyph("@", {".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".###."})
glyph("A", {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"})
glyph("B", {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."})
glyph("C", {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."})
glyph("D", {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."})
glyph("E", {"#####", "#....", "#....", "####.", "#....", "#....", "#####"})
glyph("F", {"#####", "#....", "#....", "####.", "#....", "#....", "#...."})
glyph("G", {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"})
glyph("H", {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"})
glyph("I", {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."})
glyph("J", {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."})
glyph("K", {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"})
glyph("L", {"#....", "#....", "#....", "#....", "#....", "#....", "#####"})
glyph("M", {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"})
glyph("N", {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"})
glyph("O", {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."})
glyph("P", {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."})
glyph("Q", {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"})
glyph("R", {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"})
glyph("S", {".####", "#....", "#....", ".###.", "....#", "....#", "####."})
glyph("T", {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."})
glyph("U", {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."})
glyph("V", {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."})
glyph("W", {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."})
glyph("X", {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"})
glyph("Y", {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."})
glyph("Z", {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"})
glyph("[", {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."})
glyph("\\", {"#....", ".#...", ".#...", "..#..", "...#.", "...#.", "....#"})
glyph("]", {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."})
glyph("^", {"..#..", ".#.#.", "#...#"})
glyph("_", {".....", ".....", ".....", ".....", ".....", ".....", "#####"})
glyph("`", {".#...", "..#.."})
glyph("a", {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"})
glyph("b", {"#....", "#....", "####.", "#...#", "#...#", "#...#", "####."})
glyph("c", {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."})
glyph("d", {"....#", "....#", ".####", "#...#", "#...#", "#...#", ".####"})
glyph("e", {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."})
glyph("f", {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."})
glyph("g", {".....", ".....", ".####", "#...#", "#...#", ".####", "....#", ".###."})
glyph("h", {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"})
glyph("i", {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."})
glyph("j", {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "#..#.", ".##.."})
glyph("k", {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."})
glyph("l", {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."})
glyph("m", {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#"})
glyph("n", {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"})
glyph("o", {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."})
glyph("p", {".....", ".....", "####.", "#...#", "#...#", "####.", "#....", "#...."})
glyph("q", {".....", ".....", ".####", "#...#", "#...#", ".####", "....#", "....#"})
glyph("r", {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."})
glyph("s", {".....", ".....", ".####", "#....", ".###.", "....#", "####."})
glyph("t", {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."})
glyph("u", {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"})
glyph("v", {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."})
glyph("w", {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."})
glyph("x", {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"})
glyph("y", {".....", ".....", "#...#", "#...#", "#...#", ".####", "....#", ".###."})
glyph("z", {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"})
glyph("{", {"...#.", "..#..", "..#..", ".#...", "..#..", "..#..", "...#."})
glyph("|", {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."})
glyph("}", {".#...", "..#..", "..#..", "...#.", "..#..", "..#..", ".#..."})
glyph("~", {".....", ".....", ".#...", "#.#.#", "...#.", ".....", "....."})
glyph("±", {"..#..", "..#..", "#####", "..#..", "..#..", ".....", "#####"})
M.glyphs = G
M.CHAR_W, M.CHAR_H = 6, 9 -- cell size in pixels at scale 1 (5x8 glyph + spacing)

-- splits a string into glyph keys (UTF-8 "±" is one key; other non-ASCII bytes become "?")
local function chars(s)
  local out, i, n = {}, 1, #s
  while i <= n do
    local b = s:byte(i)
    if b < 128 then
      out[#out + 1] = string.char(b)
      i = i + 1
    else
      local len = b >= 240 and 4 or b >= 224 and 3 or b >= 192 and 2 or 1
      local c = s:sub(i, i + len - 1)
      out[#out + 1] = G[c] and c or "?"
      i = i + len
    end
  end
  return out
end

function M.text_width(s, scale)
  scale = scale or 1
  local n = #chars(tostring(s))
  if n == 0 then return 0 end
  return (n * M.CHAR_W - 1) * scale
end
function M.text_height(scale) return 8 * (scale or 1) end

---------------------------------------------------------------------------------------------------- canvas
local Canvas = {}
Canvas.__index = Canvas
M.Canvas = Canvas

-- plot.canvas(w, h [, bg = {255, 255, 255}])
function M.canvas(w, h, bg)
  w, h = math.floor(w), math.floor(h)
  if w < 1 or h < 1 then error("plot.canvas: size must be positive, got " .. w .. "x" .. h, 2) end
  local c = setmetatable({w = w, h = h, buf = ffi.new("uint8_t[?]", w * h * 3)}, Canvas)
  bg = bg or {255, 255, 255}
  if bg[1] == bg[2] and bg[2] == bg[3] then ffi.fill(c.buf, w * h * 3, bg[1])
  else c:rect(0, 0, w - 1, h - 1, bg) end
  return c
end

function Canvas:set(x, y, r, g, b)
  x, y = math.floor(x), math.floor(y)
  if x < 0 or y < 0 or x >= self.w or y >= self.h then return end
  local i = (y * self.w + x) * 3
  self.buf[i], self.buf[i + 1], self.buf[i + 2] = r, g, b
end
function Canvas:get(x, y)
  local i = (y * self.w + x) * 3
  return self.buf[i], self.buf[i + 1], self.buf[i + 2]
end

-- filled rectangle, inclusive corners
function Canvas:rect(x0, y0, x1, y1, c)
  x0, x1 = math.max(0, math.floor(math.min(x0, x1))), math.min(self.w - 1, math.floor(math.max(x0, x1)))
  y0, y1 = math.max(0, math.floor(math.min(y0, y1))), math.min(self.h - 1, math.floor(math.max(y0, y1)))
  local r, g, b = c[1], c[2], c[3]
  for y = y0, y1 do
    local i = (y * self.w + x0) * 3
    for _ = x0, x1 do
      self.buf[i], self.buf[i + 1], self.buf[i + 2] = r, g, b
      i = i + 3
    end
  end
end

-- rectangle outline
function Canvas:box(x0, y0, x1, y1, c)
  self:rect(x0, y0, x1, y0, c)
  self:rect(x0, y1, x1, y1, c)
  self:rect(x0, y0, x0, y1, c)
  self:rect(x1, y0, x1, y1, c)
end

-- a line (Bresenham) drawn with a square brush of `width` pixels
function Canvas:line(x0, y0, x1, y1, c, width)
  width = width or 1
  x0, y0, x1, y1 = math.floor(x0 + 0.5), math.floor(y0 + 0.5), math.floor(x1 + 0.5), math.floor(y1 + 0.5)
  local dx, dy = math.abs(x1 - x0), -math.abs(y1 - y0)
  local sx, sy = x0 < x1 and 1 or -1, y0 < y1 and 1 or -1
  local err = dx + dy
  local lo = -math.floor((width - 1) / 2)
  local hi = lo + width - 1
  local r, g, b = c[1], c[2], c[3]
  local guard = 0
  while true do
    for oy = lo, hi do for ox = lo, hi do self:set(x0 + ox, y0 + oy, r, g, b) end end
    if x0 == x1 and y0 == y1 then break end
    guard = guard + 1
    if guard > 100000 then break end
    local e2 = 2 * err
    if e2 >= dy then
      err = err + dy
      x0 = x0 + sx
    end
    if e2 <= dx then
      err = err + dx
      y0 = y0 + sy
    end
  end
end

-- text with its top-left corner at (x, y); returns the x after the text
function Canvas:text(x, y, s, c, scale)
  scale = scale or 1
  c = c or {0, 0, 0}
  local r, g, b = c[1], c[2], c[3]
  for _, ch in ipairs(chars(tostring(s))) do
    local rows = G[ch] or G["?"]
    for ry = 1, 8 do
      local row = rows[ry]
      for rx = 1, 5 do
        if row:byte(rx) == 35 then -- '#'
          if scale == 1 then self:set(x + rx - 1, y + ry - 1, r, g, b)
          else self:rect(x + (rx - 1) * scale, y + (ry - 1) * scale, x + rx * scale - 1, y + ry * scale - 1, c) end
        end
      end
    end
    x = x + M.CHAR_W * scale
  end
  return x
end

-- text rotated 90 degrees counter-clockwise (reads bottom to top), its glyphs' top facing left; (x, y) is the
-- bottom-left corner of the rotated text
function Canvas:text_up(x, y, s, c, scale)
  scale = scale or 1
  c = c or {0, 0, 0}
  local list = chars(tostring(s))
  for i, ch in ipairs(list) do
    local rows = G[ch] or G["?"]
    local base = y - (i - 1) * M.CHAR_W * scale
    for ry = 1, 8 do
      local row = rows[ry]
      for rx = 1, 5 do
        if row:byte(rx) == 35 then
          local px, py = x + (ry - 1) * scale, base - rx * scale
          self:rect(px, py + 1, px + scale - 1, py + scale, c)
        end
      end
    end
  end
end

-- copies an RGB8 image [sh, sw, 3] at (x, y), upscaled by an integer factor (nearest)
function Canvas:blit_rgb(x, y, src, sw, sh, scale)
  scale = scale or 1
  for sy = 0, sh - 1 do
    for sx = 0, sw - 1 do
      local i = (sy * sw + sx) * 3
      local c = {src[i], src[i + 1], src[i + 2]}
      if scale == 1 then self:set(x + sx, y + sy, c[1], c[2], c[3])
      else self:rect(x + sx * scale, y + sy * scale, x + (sx + 1) * scale - 1, y + (sy + 1) * scale - 1, c) end
    end
  end
end

local default_ctx
local function get_ctx(ctx)
  if ctx then return ctx end
  default_ctx = default_ctx or pv.context{threads = 1}
  return default_ctx
end
M.context = get_ctx

-- writes the canvas as an RGB PNG
function Canvas:write(path, ctx)
  ctx = get_ctx(ctx)
  local st = tonumber(pv.C.pv_png_write(ctx:ptr(), path, self.w, self.h, 3, self.buf))
  if st ~= 0 then error("plot: " .. pv.status_name(st) .. ": " .. ctx:last_error(), 2) end
  return path
end

---------------------------------------------------------------------------------------------------- colours
M.PALETTE = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75},
  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}}

-- v in [0, 1] -> r, g, b: dark blue -> blue -> cyan -> yellow -> red -> dark red ("jet"-like)
local STOPS = {{0.0, 0, 0, 128}, {0.125, 0, 0, 255}, {0.375, 0, 255, 255}, {0.625, 255, 255, 0},
  {0.875, 255, 0, 0}, {1.0, 128, 0, 0}}
function M.colormap(v)
  if v ~= v then v = 0 end
  v = math.max(0, math.min(1, v))
  for i = 2, #STOPS do
    local a, b = STOPS[i - 1], STOPS[i]
    if v <= b[1] then
      local t = (v - a[1]) / (b[1] - a[1])
      return math.floor(a[2] + t * (b[2] - a[2]) + 0.5), math.floor(a[3] + t * (b[3] - a[3]) + 0.5),
        math.floor(a[4] + t * (b[4] - a[4]) + 0.5)
    end
  end
  return 128, 0, 0
end

---------------------------------------------------------------------------------------------------- axes
-- "nice" tick positions covering [lo, hi] with about n ticks
function M.ticks(lo, hi, n)
  n = n or 5
  if hi < lo then lo, hi = hi, lo end
  if hi == lo then
    local d = math.abs(lo) > 0 and math.abs(lo) * 0.1 or 1
    lo, hi = lo - d, hi + d
  end
  local raw = (hi - lo) / math.max(1, n)
  local mag = 10 ^ math.floor(math.log10(raw))
  local step
  for _, m in ipairs {1, 2, 2.5, 5, 10} do
    step = m * mag
    if step >= raw then break end
  end
  local first = math.ceil(lo / step - 1e-9) * step
  local list = {}
  local v = first
  while v <= hi + step * 1e-9 do
    list[#list + 1] = math.abs(v) < step * 1e-9 and 0 or v
    v = v + step
    if #list > 50 then break end
  end
  return list, step
end

-- a compact number label for a tick of the given step
function M.format_tick(v, step)
  local a = math.abs(v)
  if a ~= 0 and (a >= 1e6 or a < 1e-3) then return string.format("%.1e", v) end
  if step >= 1 and v == math.floor(v) then
    if a >= 10000 and v % 1000 == 0 then return string.format("%dk", v / 1000) end
    return string.format("%d", v)
  end
  local k = math.max(0, math.min(6, -math.floor(math.log10(step) + 1e-9)))
  if step * 10 ^ k ~= math.floor(step * 10 ^ k + 1e-9) then k = k + 1 end
  return string.format("%." .. k .. "f", v)
end

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

-- normalises the series argument to a list of {name, points}
local function series_list(series)
  local list = {}
  if series[1] ~= nil and type(series[1]) == "table" and series[1].points then
    for _, s in ipairs(series) do list[#list + 1] = {name = tostring(s.name or #list + 1), points = s.points,
      color = s.color} end
  else
    local names = {}
    for k in pairs(series) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(names) do list[#list + 1] = {name = tostring(k), points = series[k]} end
  end
  return list
end
M.series_list = series_list

-- point {x, y} (or {step =, value =}) -> x, y
local function xy(p)
  if p.step ~= nil or p.value ~= nil then return p.step or p.x, p.value or p.y end
  return p[1], p[2]
end

-- exponential moving average of a point list (TensorBoard-style smoothing), alpha in [0, 1)
local function smooth_points(points, alpha)
  local out, last = {}, nil
  for _, p in ipairs(points) do
    local x, y = xy(p)
    if finite(x) and finite(y) then
      last = last and (alpha * last + (1 - alpha) * y) or y
      out[#out + 1] = {x, last}
    end
  end
  return out
end

-- plot.lines(path, series, opts) -> path. opts: title, w (640), h (400), xlabel, ylabel, logy, smooth (EMA
-- factor; the raw curve is drawn faintly under the smoothed one), ctx, ymin, ymax, xmin, xmax.
function M.lines(path, series, opts)
  opts = opts or {}
  local W, H = opts.w or 640, opts.h or 400
  local c = M.canvas(W, H)
  local list = series_list(series or {})
  local logy = opts.logy
  local function ty(y) return logy and (y > 0 and math.log10(y) or nil) or y end
  -- ranges
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  for _, s in ipairs(list) do
    for _, p in ipairs(s.points or {}) do
      local x, y = xy(p)
      y = finite(y) and ty(y) or nil
      if finite(x) and y and finite(y) then
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, y), math.max(ymax, y)
      end
    end
  end
  if xmin == math.huge then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  if opts.xmin then xmin = opts.xmin end
  if opts.xmax then xmax = opts.xmax end
  if opts.ymin then ymin = ty(opts.ymin) end
  if opts.ymax then ymax = ty(opts.ymax) end
  if xmax == xmin then xmin, xmax = xmin - 1, xmax + 1 end
  if ymax == ymin then
    local d = math.abs(ymin) > 0 and math.abs(ymin) * 0.1 or 1
    ymin, ymax = ymin - d, ymax + d
  else
    local pad = (ymax - ymin) * 0.05
    ymin, ymax = ymin - pad, ymax + pad
  end
  local xt, xstep = M.ticks(xmin, xmax, 6)
  local yt, ystep = M.ticks(ymin, ymax, 5)
  -- margins from the tick labels
  local ylabels, wmax = {}, 0
  for i, v in ipairs(yt) do
    ylabels[i] = logy and M.format_tick(10 ^ v, 10 ^ v) or M.format_tick(v, ystep)
    wmax = math.max(wmax, M.text_width(ylabels[i]))
  end
  local left = 14 + wmax + (opts.ylabel and 14 or 0)
  local top = opts.title and 26 or 12
  local bottom = 30 + (opts.xlabel and 14 or 0)
  local right = 16
  local x0, y0, x1, y1 = left, top, W - right, H - bottom
  if x1 - x0 < 20 or y1 - y0 < 20 then error("plot.lines: the image is too small for the axes", 2) end
  local function px(x) return x0 + (x - xmin) / (xmax - xmin) * (x1 - x0) end
  local function py(y) return y1 - (y - ymin) / (ymax - ymin) * (y1 - y0) end
  -- grid and ticks
  local grid, axis, ink = {232, 232, 232}, {60, 60, 60}, {30, 30, 30}
  for i, v in ipairs(yt) do
    if v >= ymin and v <= ymax then
      local y = math.floor(py(v) + 0.5)
      c:rect(x0, y, x1, y, grid)
      c:rect(x0 - 4, y, x0 - 1, y, axis)
      c:text(x0 - 6 - M.text_width(ylabels[i]), y - 4, ylabels[i], ink)
    end
  end
  for _, v in ipairs(xt) do
    if v >= xmin and v <= xmax then
      local x = math.floor(px(v) + 0.5)
      c:rect(x, y0, x, y1, grid)
      c:rect(x, y1 + 1, x, y1 + 4, axis)
      local lab = M.format_tick(v, xstep)
      c:text(x - math.floor(M.text_width(lab) / 2), y1 + 8, lab, ink)
    end
  end
  c:box(x0, y0, x1, y1, axis)
  if opts.title then c:text(math.floor((W - M.text_width(opts.title, 2)) / 2), 5, opts.title, ink, 2) end
  if opts.xlabel then c:text(math.floor((x0 + x1 - M.text_width(opts.xlabel)) / 2), H - 12, opts.xlabel, ink) end
  if opts.ylabel then
    c:text_up(3, math.floor((y0 + y1 + M.text_width(opts.ylabel)) / 2), opts.ylabel, ink)
  end
  -- curves (clipped to the plot box)
  local function draw(points, col, width)
    local prev
    for _, p in ipairs(points) do
      local x, y = xy(p)
      y = finite(y) and ty(y) or nil
      if finite(x) and y and finite(y) then
        local qx = math.max(x0, math.min(x1, px(x)))
        local qy = math.max(y0, math.min(y1, py(y)))
        if prev then c:line(prev[1], prev[2], qx, qy, col, width)
        else c:rect(qx - 1, qy - 1, qx + 1, qy + 1, col) end
        prev = {qx, qy}
      else
        prev = nil
      end
    end
  end
  for i, s in ipairs(list) do
    local col = s.color or M.PALETTE[(i - 1) % #M.PALETTE + 1]
    if opts.smooth and opts.smooth > 0 then
      local faint = {math.floor(col[1] * 0.3 + 255 * 0.7), math.floor(col[2] * 0.3 + 255 * 0.7),
        math.floor(col[3] * 0.3 + 255 * 0.7)}
      draw(s.points or {}, faint, 1)
      draw(smooth_points(s.points or {}, opts.smooth), col, 2)
    else
      draw(s.points or {}, col, 2)
    end
  end
  -- legend (top right, inside the box)
  if #list > 0 and opts.legend ~= false then
    local lw = 0
    for _, s in ipairs(list) do lw = math.max(lw, M.text_width(s.name)) end
    local bw, bh = lw + 30, #list * 12 + 6
    local bx, by = x1 - bw - 6, y0 + 6
    if opts.legend == "bottom" then by = y1 - bh - 6 end
    c:rect(bx, by, bx + bw, by + bh, {255, 255, 255})
    c:box(bx, by, bx + bw, by + bh, {160, 160, 160})
    for i, s in ipairs(list) do
      local col = s.color or M.PALETTE[(i - 1) % #M.PALETTE + 1]
      local yy = by + 4 + (i - 1) * 12
      c:rect(bx + 5, yy + 3, bx + 18, yy + 5, col)
      c:text(bx + 24, yy, s.name, ink)
    end
  end
  c:write(path, opts.ctx)
  return path
end

return M
