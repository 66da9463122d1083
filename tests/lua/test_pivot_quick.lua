-- End-to-end test of recipes/pivot.lua in quick mode: runs `pivot run recipes/pivot.lua --quick --out TMP` as a
-- child process (arg[-1] is this executable) and checks that it completes, that TMP/report.md holds the table with
-- one row per encoder (base, SFT, DPO) whose every cell is a finite number (or mean ± std), that the raw metrics,
-- curves and gradient-map panels exist, that the base encoder's linear probe beats the majority class by 0.1 on
-- its most learnable attribute, and that the segmentation probe's recall is above a floor.
-- Run by ctest as `pivot run tests/lua/test_pivot_quick.lua`.
local pv = require "pivot"
local json = require "pivot.json"
local testing = require "pivot.testing"
local log = require "pivot.train.log"

local T = testing.suite("pivot quick")
local TMP = testing.tmpdir("pivot_quick")
local exe = arg and arg[-1] or "pivot"
local recipe = pv.source_dir .. "/recipes/pivot.lua"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local output, seconds
T:case("quick mode completes", function()
  local t0 = log.now()
  local cmd = string.format("%s run %s --quick --out %s 2>&1", q(exe), q(recipe), q(TMP))
  local p = assert(io.popen(cmd .. "; echo EXIT_STATUS=$?"))
  output = p:read("*a")
  p:close()
  seconds = log.now() - t0
  local status = tonumber(output:match("EXIT_STATUS=(%d+)%s*$"))
  if status ~= 0 then error("the quick run failed (exit " .. tostring(status) .. "):\n" .. output:sub(-4000)) end
  print(string.format("      quick run: %.1f s wall", seconds))
  assert(output:find("wall time:", 1, true), "the run prints its wall time")
  for _, claim in ipairs {"Claim 1a", "Claim 2", "Claim 4a"} do
    assert(output:find(claim, 1, true), "the run prints a verdict for " .. claim)
  end
end)

-- the markdown rows of the first table after "## Results"
local function main_table(md)
  local rows, started, intable = {}, false, false
  for line in (md .. "\n"):gmatch("(.-)\n") do
    if line:match("^## Results") then started = true
    elseif started then
      if line:match("^|") then
        intable = true
        rows[#rows + 1] = line
      elseif intable then break end
    end
  end
  return rows
end

local function cells(line)
  local out = {}
  for c in line:gmatch("|([^|]*)") do out[#out + 1] = c:match("^%s*(.-)%s*$") end
  if out[#out] == "" then out[#out] = nil end
  return out
end

T:case("report.md has the table, every number finite", function()
  local md = assert(read(TMP .. "/report.md"), "no report.md")
  local rows = main_table(md)
  assert(#rows >= 5, "a header, a separator and three encoder rows, got " .. #rows .. " lines")
  local header = cells(rows[1])
  assert(header[1] == "encoder" and #header >= 7, "header: " .. rows[1])
  local want = {"base", "SFT", "DPO"}
  for i = 1, 3 do
    local c = cells(rows[2 + i])
    assert(c[1]:find(want[i], 1, true), "row " .. i .. " is " .. c[1])
    assert(#c == #header, "row " .. i .. " has " .. #c .. " cells, the header " .. #header)
    for j = 2, #c do
      local numbers = 0
      for x in c[j]:gmatch("[^%s±]+") do
        local v = tonumber(x)
        assert(v and v == v and v ~= math.huge and v ~= -math.huge,
          string.format("row %s, column %s: '%s' is not a finite number", c[1], header[j], c[j]))
        numbers = numbers + 1
      end
      assert(numbers >= 1 and numbers <= 2, string.format("row %s, column %s: '%s'", c[1], header[j], c[j]))
    end
  end
  for _, name in ipairs {"Verdicts", "Curves", "Panels", "Raw metrics"} do
    assert(md:find("## " .. name, 1, true), "report.md has no section " .. name)
  end
  for png in md:gmatch("%((curve_[^)]+%.png)%)") do assert(exists(TMP .. "/" .. png), "missing " .. png) end
  local npanels = 0
  for png in md:gmatch("%((panels/[^)]+%.png)%)") do
    assert(exists(TMP .. "/" .. png), "missing " .. png)
    npanels = npanels + 1
  end
  assert(npanels >= 1, "at least one gradient-map panel")
end)

T:case("raw metrics: one line per seed x encoder x metric and per training step", function()
  local n, enc, steps = 0, {}, {}
  for line in io.lines(TMP .. "/metrics_raw.jsonl") do
    local m = json.decode(line)
    n = n + 1
    assert(m.seed, "every line has its seed")
    if m.encoder then enc[m.encoder .. "/" .. m.metric] = m.value end
    if m.stage and m.step then steps[m.stage] = (steps[m.stage] or 0) + 1 end
  end
  for _, e in ipairs {"base", "sft", "dpo"} do
    for _, name in ipairs {"probe/shape", "probe/color", "probe/count", "seg/recall", "seg/miou", "vqa/vision",
      "vqa/knowledge", "transfer/vision"} do
      assert(type(enc[e .. "/" .. name]) == "number", "missing " .. e .. "/" .. name)
    end
  end
  for _, st in ipairs {"stage0", "stage1a", "stage1b", "sft", "dpo"} do
    assert((steps[st] or 0) > 0, "no step lines of " .. st)
  end
end)

T:case("probes beat chance (base encoder)", function()
  local r = json.decode(assert(read(TMP .. "/seed_1/result.json")))
  local base = r.metrics.base
  local best, best_attr, margin = -1, nil, nil
  for _, a in ipairs {"shape", "color", "size", "count"} do
    local m = base["probe/" .. a] - r.majority[a]
    print(string.format("      probe %-5s %.3f (majority class %.3f)", a, base["probe/" .. a], r.majority[a]))
    if m > best then best, best_attr = m, a end
  end
  margin = best
  assert(margin > 0.1, string.format("the most learnable attribute (%s) beats the majority class by only %.3f",
    best_attr, margin))
  print(string.format("      seg recall %.3f, mIoU %.3f", base["seg/recall"], base["seg/miou"]))
  assert(base["seg/recall"] > 0.15, "segmentation recall " .. base["seg/recall"] .. " is below the floor 0.15")
  assert(base["seg/miou"] > 0.1, "segmentation mIoU " .. base["seg/miou"] .. " is below the floor 0.1")
  local focus = base["focus/uniform"]
  assert(focus > 0 and focus < 1, "the uniform focus share is a fraction")
end)

os.execute("rm -rf " .. q(TMP))
T:finish()
