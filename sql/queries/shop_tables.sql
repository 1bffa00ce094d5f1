-- The shop's tables as loaded (a partitioned table once, not its partitions), biggest first.
-- Catalog names are qualified: a learner's search_path or objects must not change the answer.
SELECT c.relname
FROM pg_catalog.pg_class c
WHERE c.relnamespace = 'public'::pg_catalog.regnamespace
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
ORDER BY pg_catalog.pg_relation_size(c.oid)
         + coalesce((SELECT sum(pg_catalog.pg_relation_size(i.inhrelid)) FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid), 0) DESC,
         c.relname
