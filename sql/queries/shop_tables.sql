-- The shop's tables as loaded (a partitioned table once, not its partitions), biggest first.
SELECT c.relname
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace
  AND c.relkind IN ('r', 'p')
  AND NOT c.relispartition
ORDER BY pg_relation_size(c.oid)
         + coalesce((SELECT sum(pg_relation_size(i.inhrelid)) FROM pg_inherits i WHERE i.inhparent = c.oid), 0) DESC,
         c.relname
