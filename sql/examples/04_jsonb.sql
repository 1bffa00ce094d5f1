-- The seed's JSONB examples.
-- Changes from the seed:
--   * the LATERAL subquery gets an ORDER BY: its LIMIT 5 picked arbitrary orders;
--   * the aggregation and the query get an ORDER BY (and the aggregation a LIMIT), so the
--     output is stable;
--   * the UPDATE assigned profile twice, which fails ("multiple assignments to same column";
--     sql/seed_originals/06): the two changes are one expression, jsonb_set(...) || '{...}';
--   * the UPDATE's made-up id is replaced by a real user who has an address (jsonb_set does not
--     create the missing parent "address", it would change nothing).

-- name: jsonb_query
SELECT id, email,
       profile->>'firstName' AS first_name,
       profile->>'lastName' AS last_name,
       profile->'address'->>'city' AS city,
       jsonb_array_length(profile->'interests') AS interest_count
FROM users
WHERE profile @> '{"verified": true}'
  AND profile->'age' > '18'
  AND profile->'address'->>'country' = 'US'
  AND profile->'interests' ? 'technology'
ORDER BY email;

-- name: jsonb_aggregation
SELECT jsonb_build_object(
           'user_id', u.id,
           'username', u.username,
           'orders', jsonb_agg(jsonb_build_object('order_id', o.id, 'total', o.total_amount, 'items', o.item_count)
                               ORDER BY o.created_at DESC)
       ) AS user_data
FROM users u
LEFT JOIN LATERAL (
    SELECT o.id, o.total_amount, o.created_at, COUNT(oi.id) AS item_count
    FROM orders o
    LEFT JOIN order_items oi ON o.id = oi.order_id
    WHERE o.user_id = u.id
    GROUP BY o.id
    ORDER BY o.created_at DESC
    LIMIT 5
) o ON true
GROUP BY u.id, u.username
ORDER BY u.username
LIMIT 20;

-- name: jsonpath
SELECT sku, name, attributes->'features' AS features FROM products
WHERE attributes @? '$.features[*] ? (@ == "waterproof")'
ORDER BY sku;

-- name: jsonpath_filter
-- Three of jsonb_query's conditions (verified, over 18, in the US) as one jsonpath predicate;
-- @? is also served by the GIN index on profile.
SELECT count(*) AS verified_adults_in_us
FROM users
WHERE profile @? '$ ? (@.verified == true && @.age > 18 && @.address.country == "US")';

-- name: jsonb_update (dml)
UPDATE users
SET profile = jsonb_set(profile, '{address,city}', '"New York"') || '{"lastModified": "2024-01-01"}'
WHERE id = (SELECT id FROM users WHERE profile ? 'address' ORDER BY username LIMIT 1)
RETURNING profile->'address'->>'city' AS city, profile->>'lastModified' AS last_modified;
