-- Foreign keys between top-level tables of a schema (one row per constraint).
SELECT src.relname AS from_table,
       dst.relname AS to_table,
       con.conname AS constraint_name,
       (SELECT string_agg(a.attname, ', ' ORDER BY k.ord)
          FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) AS from_columns
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class src ON src.oid = con.conrelid
JOIN pg_catalog.pg_class dst ON dst.oid = con.confrelid
JOIN pg_catalog.pg_namespace n ON n.oid = src.relnamespace
WHERE con.contype = 'f'
  AND n.nspname = %(schema)s
  AND NOT src.relispartition
  AND con.conparentid = 0
ORDER BY src.relname, con.conname;
