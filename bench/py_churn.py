# Python object churn (issue 14): build 200,000 small tuples of an int, a string and a float,
# serialize a tenth of them, drop them; 25 times. pymalloc returns each emptied 1 MiB arena
# with munmap and maps new ones for the next round. Prints the time of the loop in ns.
import json
import time

t0 = time.perf_counter_ns()
total = 0
for r in range(25):
    objs = [(i, str(i) * 3, float(i)) for i in range(200000)]
    total += len(json.dumps(objs[::10]))
    del objs
assert total == 19611125, total
print(f"python object churn\t{time.perf_counter_ns() - t0}")
