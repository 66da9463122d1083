-- Tests of lua/pivot/report.lua and lua/pivot/plot.lua: mean ± std formatting, markdown and terminal tables,
-- report.md with its links, and valid PNG line plots (signature, IHDR size, ink where the curves are).
-- Run by ctest as `pivot run tests/lua/test_report.lua`.
local pv = require "pivot"
local report = require "pivot.report"
local plot = require "pivot.plot"

local T = require("pivot.testing").suite("report")
local function case(name, fn) T:case(name, fn) end

local TMP = os.getenv("PIVOT_TEST_OUT") or (os.tmpname() .. "_report")
os.execute("rm -rf '" .. TMP .. "' && mkdir -p '" .. TMP .. "'")

local function read(path)
  local f = assert(io.open(path, "rb"), "cannot open " .. path)
  local s = f:read("*a")
  f:close()
  return s
end

-- PNG signature and IHDR -> width, height, bit depth, colour type
local function png_info(path)
  local s = read(path)
  assert(#s > 33, path .. ": too short for a PNG")
  assert(s:sub(1, 8) == "\137PNG\r\n\26\n", path .. ": no PNG signature")
  assert(s:sub(13, 16) == "IHDR", path .. ": the first chunk is not IHDR")
  local function u32(i)
    local a, b, c, d = s:byte(i, i + 3)
    return ((a * 256 + b) * 256 + c) * 256 + d
  end
  assert(s:sub(-12, -9) == "\0\0\0\0" and s:sub(-8, -5) == "IEND", path .. ": no IEND chunk at the end")
  return u32(17), u32(21), s:byte(25), s:byte(26)
end

case("mean_std and cells", function()
  local s, m, sd = report.mean_std({1, 2, 3})
  assert(s == "2.000 ± 1.000", s)
  assert(m == 2 and sd == 1)
  assert(report.mean_std({0.5}) == "0.500")
  assert(report.mean_std({}) == "n/a")
  assert(report.mean_std({0.81, 0.83}, "%.2f") == "0.82 ± 0.01", report.mean_std({0.81, 0.83}, "%.2f"))
  assert(report.mean_std({1, 0 / 0, 3}) == "2.000 ± 1.414", "non-finite values are skipped")
  assert(report.cell(3) == "3" and report.cell(0.123456) == "0.1235" and report.cell("x") == "x")
  assert(report.cell({0.6, 0.8}) == "0.700 ± 0.141", report.cell({0.6, 0.8}))
end)

case("markdown and terminal tables", function()
  local header = {"encoder", "probe", "seg"}
  local rows = {{"SFT", {0.6, 0.8}, 0.41}, {"DPO | x", {0.7, 0.7}, 0.5}}
  local md = report.table_md(header, rows)
  local lines = {}
  for l in md:gmatch("[^\n]+") do lines[#lines + 1] = l end
  assert(#lines == 4, md)
  assert(lines[1] == "| encoder | probe | seg |", lines[1])
  assert(lines[2] == "|---|---:|---:|", lines[2])
  assert(lines[3] == "| SFT | 0.700 ± 0.141 | 0.41 |", lines[3])
  assert(lines[4] == "| DPO \\| x | 0.700 ± 0.000 | 0.5 |", lines[4])
  local txt = report.table_text(header, rows)
  local tl = {}
  for l in txt:gmatch("[^\n]+") do tl[#tl + 1] = l end
  assert(#tl == 4, txt)
  -- aligned: every line has the same display width
  local function w(s) local n = 0 for _ in s:gmatch("[^\128-\191]") do n = n + 1 end return n end
  for i = 2, #tl do assert(w(tl[i]) == w(tl[1]), "misaligned:\n" .. txt) end
  report.print_table(header, rows)
end)

case("plot.lines writes a valid PNG with the curves drawn", function()
  local pts_a, pts_b = {}, {}
  for i = 1, 200 do
    pts_a[i] = {i, 2.5 * math.exp(-i / 50) + 0.2 + 0.05 * math.sin(i)}
    pts_b[i] = {i, 2.5 * math.exp(-i / 80) + 0.4}
  end
  local path = TMP .. "/lines.png"
  plot.lines(path, {sft = pts_a, dpo = pts_b}, {title = "loss", w = 500, h = 300, xlabel = "step", ylabel = "loss"})
  local w, h, depth, ctype = png_info(path)
  assert(w == 500 and h == 300, string.format("size %dx%d", w, h))
  assert(depth == 8 and ctype == 2, "expected 8-bit RGB")
  -- the same drawing on a canvas: count pixels of each series' colour
  local c = plot.canvas(10, 10)
  assert(c.w == 10)
  -- empty and degenerate series still make a plot
  plot.lines(TMP .. "/empty.png", {}, {title = "empty"})
  plot.lines(TMP .. "/flat.png", {flat = {{1, 1}, {2, 1}}, nan = {{1, 0 / 0}}}, {w = 200, h = 120})
  assert(png_info(TMP .. "/empty.png") == 640)
  assert(png_info(TMP .. "/flat.png") == 200)
  plot.lines(TMP .. "/log.png", {{name = "a", points = pts_a}}, {logy = true, smooth = 0.9, w = 320, h = 200})
  assert(png_info(TMP .. "/log.png") == 320)
end)

case("canvas text, lines and colours", function()
  local c = plot.canvas(120, 40)
  c:text(2, 2, "abc 0.5 ± x", {0, 0, 0})
  local ink = 0
  for y = 0, 39 do for x = 0, 119 do
    local r = c:get(x, y)
    if r == 0 then ink = ink + 1 end
  end end
  assert(ink > 30, "text drew " .. ink .. " pixels")
  assert(plot.text_width("abc") == 17 and plot.text_width("abc", 2) == 34)
  c:line(0, 39, 119, 39, {255, 0, 0}, 1)
  local r, g, b = c:get(60, 39)
  assert(r == 255 and g == 0 and b == 0)
  local r0, g0, b0 = plot.colormap(0)
  local r1, g1, b1 = plot.colormap(1)
  assert(b0 > r0 and r1 > b1, "the colormap goes from blue to red")
  local t, step = plot.ticks(0, 1, 5)
  assert(step == 0.2 and #t == 6, "ticks " .. table.concat(t, ","))
  assert(plot.format_tick(0.2, 0.2) == "0.2" and plot.format_tick(1000, 500) == "1000")
  assert(plot.format_tick(0.25, 0.25) == "0.25", plot.format_tick(0.25, 0.25))
end)

case("report.write: report.md with the table, curve PNGs, panels and raw metrics", function()
  local dir = TMP .. "/run"
  local loss, margins = {}, {}
  for i = 1, 100 do
    loss[i] = {i, 1 / (1 + i / 10)}
    margins[i] = {step = i, value = math.log(1 + i) / 5}
  end
  -- a panel image to link
  local panel = plot.canvas(64, 32, {200, 220, 255})
  panel:text(4, 12, "panel", {0, 0, 0})
  os.execute("mkdir -p '" .. dir .. "'")
  panel:write(dir .. "/panel.png")
  local raw = dir .. "/metrics.jsonl"
  local f = assert(io.open(raw, "w"))
  f:write('{"step": 1, "loss": 0.9}\n')
  f:close()
  local path, plots = report.write(dir, {
    title = "test report",
    table = {header = {"encoder", "top-1", "recall"}, rows = {{"SFT", {0.61, 0.63, 0.62}, 0.4},
      {"DPO", {0.66, 0.68, 0.67}, 0.45}}},
    tables = {{title = "VQA", header = {"type", "acc"}, rows = {{"color", 0.9}, {"count", 0.5}}}},
    curves = {loss = {sft = loss, dpo = margins}, ["rewards/margins"] = margins},
    panels = {dir .. "/panel.png", {path = "/elsewhere/p.png", caption = "outside"}},
    raw = raw,
  })
  assert(path == dir .. "/report.md")
  local md = read(path)
  assert(md:find("# test report", 1, true), md)
  assert(md:find("| encoder | top-1 | recall |", 1, true), md)
  assert(md:find("| SFT | 0.620 ± 0.010 | 0.4 |", 1, true), md)
  assert(md:find("| DPO | 0.670 ± 0.010 | 0.45 |", 1, true), md)
  assert(md:find("## VQA", 1, true) and md:find("| color | 0.9 |", 1, true), md)
  assert(md:find("](curve_loss.png)", 1, true), md)
  assert(md:find("](curve_rewards_margins.png)", 1, true), md)
  assert(md:find("](panel.png)", 1, true), "panel links are relative to the report")
  assert(md:find("](/elsewhere/p.png)", 1, true), md)
  assert(md:find("[metrics.jsonl](metrics.jsonl)", 1, true), md)
  assert(#plots == 2, "two curve plots")
  for _, p in ipairs(plots) do
    local w, h = png_info(p)
    assert(w == 640 and h == 360, p .. string.format(": %dx%d", w, h))
  end
  print("report: " .. path .. "  plot: " .. plots[1])
end)

if not os.getenv("PIVOT_TEST_OUT") and T.failed == 0 then os.execute("rm -rf '" .. TMP .. "'") end
T:finish()
