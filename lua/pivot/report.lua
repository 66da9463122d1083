-- pivot.report: a run's report as markdown with PNG plots.
--
--   local report = require "pivot.report"
--   report.write("runs/x", {
--     title = "PIVOT miniature",
--     text = "free text (markdown) after the title",                 -- optional
--     table = {header = {"encoder", "probe top-1", "seg recall"},
--              rows = {{"SFT", {0.61, 0.63, 0.60}, {0.41, 0.40}}, {"DPO", {0.66, 0.65, 0.67}, 0.45}}},
--     tables = {{title = "VQA by type", header = {...}, rows = {...}}},  -- more tables (optional)
--     curves = {loss = {sft = {{1, 2.3}, ...}, dpo = {...}},         -- name -> a point list, or a table of series
--               ["rewards/margins"] = {{1, 0.0}, {2, 0.1}}},         --   (one PNG per name: curve_<name>.png)
--     panels = {"runs/x/gradmap_0.png", ...},                        -- images to link (relative paths when inside dir)
--     raw = "runs/x/metrics.jsonl",                                  -- the raw metrics (linked)
--   }) -> path of dir/report.md, list of the plot paths
--
-- Cells: a number prints with 4 significant digits, a list of numbers as mean ± std (report.mean_std), a string
-- as it is. report.print_table(header, rows) prints the same table to the terminal, aligned.
local plot = require "pivot.plot"

local M = {}

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end

-- mean and sample standard deviation (n - 1) of a list of numbers (non-finite values are skipped)
function M.stats(list)
  local n, s = 0, 0
  for _, v in ipairs(list) do
    if finite(v) then n, s = n + 1, s + v end
  end
  if n == 0 then return nil, nil, 0 end
  local mean = s / n
  local ss = 0
  for _, v in ipairs(list) do if finite(v) then ss = ss + (v - mean) ^ 2 end end
  local std = n > 1 and math.sqrt(ss / (n - 1)) or 0
  return mean, std, n
end

-- report.mean_std(list [, fmt = "%.3f"]) -> "0.812 ± 0.013" ("0.812" for one value, "n/a" for none), mean, std
function M.mean_std(list, fmt)
  fmt = fmt or "%.3f"
  if type(list) == "number" then list = {list} end
  local mean, std, n = M.stats(list)
  if n == 0 then return "n/a" end
  if n == 1 then return string.format(fmt, mean), mean, 0 end
  return string.format(fmt .. " ± " .. fmt, mean, std), mean, std
end

-- a table cell as text
function M.cell(v, fmt)
  local t = type(v)
  if t == "number" then
    if v ~= v then return "nan" end
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
    return string.format(fmt or "%.4g", v)
  elseif t == "table" then
    return (M.mean_std(v, fmt and fmt or "%.3f"))
  elseif v == nil then
    return ""
  end
  return tostring(v)
end

local function md_escape(s) return (tostring(s):gsub("|", "\\|"):gsub("\n", " ")) end

-- markdown table text
function M.table_md(header, rows, fmt)
  local out = {}
  local h = {}
  for i, v in ipairs(header) do h[i] = md_escape(M.cell(v, fmt)) end
  out[#out + 1] = "| " .. table.concat(h, " | ") .. " |"
  local sep = {}
  for i = 1, #header do sep[i] = i == 1 and "---" or "---:" end
  out[#out + 1] = "|" .. table.concat(sep, "|") .. "|"
  for _, row in ipairs(rows) do
    local r = {}
    for i = 1, #header do r[i] = md_escape(M.cell(row[i], fmt)) end
    out[#out + 1] = "| " .. table.concat(r, " | ") .. " |"
  end
  return table.concat(out, "\n") .. "\n"
end

-- display width of a UTF-8 string (code points)
local function width(s)
  local n = 0
  for _ in tostring(s):gmatch("[^\128-\191]") do n = n + 1 end
  return n
end

-- aligned terminal table text (first column left-aligned, the others right-aligned)
function M.table_text(header, rows, fmt)
  local cells = {{}}
  for i, v in ipairs(header) do cells[1][i] = M.cell(v, fmt) end
  for r, row in ipairs(rows) do
    cells[r + 1] = {}
    for i = 1, #header do cells[r + 1][i] = M.cell(row[i], fmt) end
  end
  local wd = {}
  for _, row in ipairs(cells) do
    for i = 1, #header do wd[i] = math.max(wd[i] or 0, width(row[i])) end
  end
  local lines = {}
  for r, row in ipairs(cells) do
    local parts = {}
    for i = 1, #header do
      local pad = string.rep(" ", wd[i] - width(row[i]))
      parts[i] = i == 1 and (row[i] .. pad) or (pad .. row[i])
    end
    lines[#lines + 1] = table.concat(parts, "  ")
    if r == 1 then
      local dash = {}
      for i = 1, #header do dash[i] = string.rep("-", wd[i]) end
      lines[#lines + 1] = table.concat(dash, "  ")
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

function M.print_table(header, rows, fmt)
  io.write(M.table_text(header, rows, fmt))
  io.flush()
end

-- a file-name-safe version of a name
function M.slug(name)
  local s = tostring(name):gsub("[^%w%-_]+", "_"):gsub("^_+", ""):gsub("_+$", "")
  if s == "" then s = "curve" end
  return s
end

local function mkdirs(dir)
  local ok = os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")
  if ok ~= true and ok ~= 0 then error("report: cannot create " .. dir, 3) end
end

-- a path as linked from dir/report.md: relative when inside dir
local function link(dir, path)
  local d = dir:gsub("/+$", "") .. "/"
  if path:sub(1, #d) == d then return path:sub(#d + 1) end
  if d:sub(1, 2) == "./" and path:sub(1, #d - 2) == d:sub(3) then return path:sub(#d - 1) end
  return path
end

-- is x a point list ({{x, y}, ...} or {{step =, value =}, ...}) rather than a table of named series
local function is_points(x)
  if type(x) ~= "table" then return false end
  if #x == 0 then return next(x) == nil end
  return type(x[1]) == "table" and (type(x[1][1]) == "number" or x[1].step ~= nil or x[1].value ~= nil)
end

-- report.write(dir, r) -> path of report.md, list of plot paths (see the header)
function M.write(dir, r)
  r = r or {}
  mkdirs(dir)
  local md = {}
  md[#md + 1] = "# " .. (r.title or "report") .. "\n"
  if r.text then md[#md + 1] = r.text .. "\n" end
  if r.table then
    if r.table.title then md[#md + 1] = "## " .. r.table.title .. "\n" end
    md[#md + 1] = M.table_md(r.table.header, r.table.rows, r.table.fmt)
    if r.table.note then md[#md + 1] = "\n" .. r.table.note .. "\n" end
  end
  for _, t in ipairs(r.tables or {}) do
    md[#md + 1] = "\n## " .. (t.title or "table") .. "\n"
    md[#md + 1] = M.table_md(t.header, t.rows, t.fmt)
    if t.note then md[#md + 1] = "\n" .. t.note .. "\n" end
  end
  local plots = {}
  if r.curves and next(r.curves) then
    md[#md + 1] = "\n## Curves\n"
    local names = {}
    for k in pairs(r.curves) do names[#names + 1] = k end
    table.sort(names, function(a, b) return tostring(a) < tostring(b) end)
    local used = {}
    for _, name in ipairs(names) do
      local v = r.curves[name]
      local series = is_points(v) and {[tostring(name)] = v} or v
      local slug = M.slug(name)
      while used[slug] do slug = slug .. "_" end
      used[slug] = true
      local path = dir .. "/curve_" .. slug .. ".png"
      local po = r.plot_opts and r.plot_opts[name] or {}
      plot.lines(path, series, {title = tostring(name), xlabel = po.xlabel or "step", ylabel = po.ylabel,
        w = po.w or 640, h = po.h or 360, logy = po.logy, smooth = po.smooth, legend = po.legend})
      plots[#plots + 1] = path
      md[#md + 1] = string.format("![%s](%s)\n", md_escape(name), link(dir, path))
    end
  end
  if r.panels and #r.panels > 0 then
    md[#md + 1] = "\n## Panels\n"
    for _, p in ipairs(r.panels) do
      local path, caption = p, nil
      if type(p) == "table" then path, caption = p.path, p.caption end
      local l = link(dir, path)
      md[#md + 1] = string.format("![%s](%s)\n", md_escape(caption or l), l)
      if caption then md[#md + 1] = "\n" .. caption .. "\n" end
    end
  end
  if r.raw then
    md[#md + 1] = "\n## Raw metrics\n"
    local raws = type(r.raw) == "table" and r.raw or {r.raw}
    for _, p in ipairs(raws) do
      local l = link(dir, p)
      md[#md + 1] = string.format("- [%s](%s)\n", l, l)
    end
  end
  local path = dir .. "/report.md"
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("report.write: " .. tostring(err), 2) end
  f:write(table.concat(md, "\n"))
  f:close()
  local ok, rerr = os.rename(tmp, path)
  if not ok then error("report.write: " .. tostring(rerr), 2) end
  return path, plots
end

return M
