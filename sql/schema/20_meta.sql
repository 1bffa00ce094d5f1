-- The dataset's own facts: its fixed "today", seed, scale and schema version.
-- Lessons use labkit_today() / labkit_now() instead of CURRENT_DATE / now(), so outputs never drift.
-- Names are schema-qualified: a learner's search_path (or a table of the same name elsewhere)
-- must not change what they read.
CREATE TABLE IF NOT EXISTS labkit_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE OR REPLACE FUNCTION labkit_today() RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce((SELECT value FROM public.labkit_meta WHERE key = 'as_of'), '2025-07-01')::date $$;

CREATE OR REPLACE FUNCTION labkit_now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT public.labkit_today()::timestamp AT TIME ZONE 'UTC' $$;
