-- expect: multiple assignments to same column "profile"
-- sqlstate: 42601
-- The seed's JSONB update sets profile twice in one SET list; SQL allows one assignment per column.
UPDATE users
SET
    profile = jsonb_set(profile, '{address,city}', '"New York"'),
    profile = profile || '{"lastModified": "2024-01-01"}'
WHERE id = '123e4567-e89b-12d3-a456-426614174000';
