-- The lua workload of the torture test: a table rewritten and read back, strings built and
-- folded into a checksum; one line per step.
local t = {}
local acc = 0
for step = 1, 60 do
  for i = 1, 200000 do t[(i * 7919 + step) % 100003] = i + step end
  local s = {}
  for i = 1, 30000 do s[#s + 1] = tostring(t[i] or 0) end
  local str = table.concat(s, ",")
  for i = 1, #str, 13 do acc = (acc * 31 + str:byte(i)) % 4294967291 end
  print(step, #str, acc)
end
