-- The statements that hand every object of the current database owned by one of the roles "old"
-- (names) to the role "new": schemas, tables, partitions, views, sequences that stand
-- alone, routines, types, domains and extended statistics. Indexes, triggers and the sequences
-- of identity or serial columns follow their table; members of extensions stay with them.
WITH old AS (
    SELECT oid FROM pg_roles WHERE rolname = ANY (%(old)s::text[])
), members AS (
    SELECT classid, objid FROM pg_depend WHERE deptype = 'e'
), user_schemas AS (
    SELECT oid, nspname, nspowner FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND nspname NOT LIKE 'pg\_temp\_%%'
      AND nspname NOT LIKE 'pg\_toast\_temp\_%%'
)
SELECT format('ALTER SCHEMA %%I OWNER TO %%I', s.nspname, %(new)s::text)
FROM user_schemas s
WHERE s.nspowner IN (SELECT oid FROM old)
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_namespace'::regclass AND m.objid = s.oid)
UNION ALL
SELECT format('ALTER %%s %%s OWNER TO %%I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                             WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
              c.oid::regclass, %(new)s::text)
FROM pg_class c JOIN user_schemas s ON s.oid = c.relnamespace
WHERE c.relowner IN (SELECT oid FROM old) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid)
  AND NOT (c.relkind = 'S' AND EXISTS (
      SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')))
UNION ALL
SELECT format('ALTER ROUTINE %%s OWNER TO %%I', p.oid::regprocedure, %(new)s::text)
FROM pg_proc p JOIN user_schemas s ON s.oid = p.pronamespace
WHERE p.proowner IN (SELECT oid FROM old)
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_proc'::regclass AND m.objid = p.oid)
UNION ALL
SELECT format('ALTER %%s %%s OWNER TO %%I', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype, %(new)s::text)
FROM pg_type t JOIN user_schemas s ON s.oid = t.typnamespace
WHERE t.typowner IN (SELECT oid FROM old)
  AND (t.typtype IN ('d', 'e', 'r') OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.classid = 'pg_type'::regclass AND m.objid = t.oid)
UNION ALL
SELECT format('ALTER STATISTICS %%I.%%I OWNER TO %%I', s.nspname, x.stxname, %(new)s::text)
FROM pg_statistic_ext x JOIN user_schemas s ON s.oid = x.stxnamespace
WHERE x.stxowner IN (SELECT oid FROM old)
