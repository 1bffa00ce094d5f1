-- Run by the administrator in a fresh copy of the shop template: store the rows of every table
-- in another physical order (a fixed pseudo-random one), so that an answer that is right only
-- because of the order rows happen to be stored in gives another result here.
-- Triggers and foreign keys are not fired (session_replication_role = replica): the data stays the same.
SET session_replication_role = replica;
DO $$
DECLARE
    item record;
    cols text;
    overriding text;
BEGIN
    FOR item IN
        SELECT c.oid, c.oid::regclass AS name
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'labkit_meta'
    LOOP
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum),
               CASE WHEN bool_or(a.attidentity = 'a') THEN 'OVERRIDING SYSTEM VALUE' ELSE '' END
          INTO cols, overriding
          FROM pg_attribute a
         WHERE a.attrelid = item.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
        EXECUTE format('WITH moved AS (DELETE FROM ONLY %s RETURNING %s) INSERT INTO %s (%s) %s SELECT %s FROM moved ORDER BY md5(moved::text)',
                       item.name, cols, item.name, cols, overriding, cols);
    END LOOP;
END
$$;
