-- A grading sandbox's postgres_fdw, for exercises that create foreign servers: the real wrapper (of the
-- extension) is renamed, and an inert one takes its name. PostgreSQL's own libpq option validator checks
-- server options (host, port, dbname, …) and user-mapping options (user, password) as postgres_fdw would;
-- with no handler, no foreign table can be read, so nothing ever connects from the grading server.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_foreign_data_wrapper WHERE fdwname = 'postgres_fdw' AND fdwhandler <> 0) THEN
        ALTER FOREIGN DATA WRAPPER postgres_fdw RENAME TO labkit_sandbox_real_postgres_fdw;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_foreign_data_wrapper WHERE fdwname = 'postgres_fdw') THEN
        CREATE FOREIGN DATA WRAPPER postgres_fdw VALIDATOR postgresql_fdw_validator;
    END IF;
END
$$;
