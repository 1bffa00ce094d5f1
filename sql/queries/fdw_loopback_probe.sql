-- Can postgres_fdw on this server reach the server itself (its own socket and port, as its owner)? Run inside a
-- transaction that is rolled back (labkit.notebook.ops): the SELECT of the foreign table connects.
CREATE EXTENSION IF NOT EXISTS postgres_fdw;
DO $$
BEGIN
    EXECUTE format('CREATE SERVER labkit_loopback_probe FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host %L, port %L, dbname %L)',
                   split_part(current_setting('unix_socket_directories'), ',', 1), current_setting('port'), current_database());
    EXECUTE format('CREATE USER MAPPING FOR CURRENT_USER SERVER labkit_loopback_probe OPTIONS (user %L)', current_user);
END $$;
CREATE FOREIGN TABLE pg_temp.labkit_loopback_probe (datname name) SERVER labkit_loopback_probe
    OPTIONS (schema_name 'pg_catalog', table_name 'pg_database');
SELECT count(*) FROM pg_temp.labkit_loopback_probe;
