-- Relations of the current database whose first data file is missing on disk (a damaged copy).
-- Needs the right to stat server files (superuser or pg_read_server_files).
SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS relation,
       pg_catalog.pg_relation_filepath(c.oid) AS path
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'i', 't', 'm', 'S')
  AND c.relpersistence <> 't'
  AND (SELECT s.size FROM pg_catalog.pg_stat_file(pg_catalog.pg_relation_filepath(c.oid), true) s) IS NULL
ORDER BY 1
