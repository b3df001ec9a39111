# The python3 workload of the torture test: a dict that grows and shrinks, JSON encoding,
# hashing; one line of progress per step (deterministic: a fixed seed, PYTHONHASHSEED=0).
import hashlib
import json
import random

rng = random.Random(7)
table = {}
digest = hashlib.sha256()
for step in range(12):
    for i in range(25000):
        k = rng.randrange(200000)
        table[k] = table.get(k, 0) + i
    blob = json.dumps(sorted(table.items())[:3000])
    digest.update(blob.encode())
    for k in list(table)[:8000]:
        del table[k]
    print(step, len(table), digest.hexdigest()[:16], flush=True)
print("done", digest.hexdigest())
