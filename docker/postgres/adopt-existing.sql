-- For a database created before findlora had separate roles (one superuser owned everything):
-- hand the database and everything findlora created in it to findlora_migrate. Run once, as
-- the superuser, in that database, after creating the two roles (docs/deploy.md, "Upgrading"):
--   psql -v ON_ERROR_STOP=1 -U <superuser> -d findlora -f adopt-existing.sql
-- Objects that belong to an extension (pgvector) stay with the superuser.
SELECT format('ALTER DATABASE %I OWNER TO findlora_migrate', current_database()) \gexec

-- Tables (their identity and serial sequences follow them).
SELECT format('ALTER TABLE %I OWNER TO findlora_migrate', tablename)
FROM pg_tables WHERE schemaname = 'public' \gexec

-- Functions (triggers' and the job queue's) and types (the job queue's enums, composites).
SELECT format('ALTER ROUTINE %s OWNER TO findlora_migrate', p.oid::regprocedure)
FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') \gexec

SELECT format('ALTER TYPE %s OWNER TO findlora_migrate', t.oid::regtype)
FROM pg_type t
WHERE t.typnamespace = 'public'::regnamespace
  AND (t.typtype IN ('e', 'd', 'r')
       OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e') \gexec

-- Only findlora's roles connect; then run `findlora db migrate` with FINDLORA_RUNTIME_ROLE.
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO findlora_app', current_database()) \gexec
