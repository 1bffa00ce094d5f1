-- Run once in the hidden dataset, after it is loaded: make it differ where an answer typed in
-- from the course data would look. The categories tree grows (a new branch under Outdoor, a
-- new leaf elsewhere: the recursive-CTE exercises' results change) and the largest table of the
-- course data shrinks (the size rankings of the monitoring exercises change). The expected
-- results on this dataset come from the reference solutions, run here afterwards.
INSERT INTO categories (id, parent_id, name, slug)
SELECT max_id + 1, (SELECT id FROM categories WHERE name = 'Outdoor'), 'Climbing', 'climbing' FROM (SELECT max(id) AS max_id FROM categories) m;
INSERT INTO categories (id, parent_id, name, slug)
SELECT max_id + 1, (SELECT id FROM categories WHERE name = 'Climbing'), 'Ropes', 'ropes' FROM (SELECT max(id) AS max_id FROM categories) m;
INSERT INTO categories (id, parent_id, name, slug)
SELECT max_id + 1, (SELECT min(id) FROM categories WHERE parent_id IS NULL AND name <> 'Outdoor'), 'Gift cards', 'gift-cards'
FROM (SELECT max(id) AS max_id FROM categories) m;
DELETE FROM logs WHERE id % 10 <> 0;
INSERT INTO labkit_meta (key, value) VALUES ('hidden_variation', '1') ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
