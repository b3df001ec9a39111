-- The sqlite3 workload of the torture test: a table built, indexed, updated and pruned in
-- transactions, with aggregates printed along the way. The database file it leaves is
-- compared with the native run's.
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
INSERT INTO t(k, v) SELECT (x * 7919) % 10007, printf('%08x', (x * 2654435761) % 4294967296) FROM c;
SELECT 'rows', count(*), sum(k) FROM t;
CREATE INDEX tk ON t(k);
SELECT 'top', k, count(*) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 3;
UPDATE t SET k = (k * 31 + id) % 10007 WHERE id % 3 = 0;
SELECT 'updated', sum(k), max(v) FROM t;
DELETE FROM t WHERE id % 5 = 0;
SELECT 'pruned', count(*), sum(k) FROM t;
CREATE TABLE agg AS SELECT k, count(*) AS n, group_concat(substr(v, 1, 2), '') AS s FROM t GROUP BY k;
SELECT 'agg', count(*), sum(n), sum(length(s)) FROM agg;
UPDATE t SET v = upper(v) || lower(v) WHERE k % 7 = 1;
SELECT 'final', count(*), sum(k), sum(length(v)) FROM t;
PRAGMA integrity_check;
