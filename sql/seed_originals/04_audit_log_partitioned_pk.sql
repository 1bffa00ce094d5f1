-- expect: unique constraint on partitioned table must include all partitioning columns
-- sqlstate: 0A000
-- The seed's audit_log (abridged): BIGSERIAL PRIMARY KEY on id alone, partitioned by changed_at.
CREATE TABLE seed_audit_log (
    id BIGSERIAL PRIMARY KEY,
    table_name VARCHAR(50) NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
) PARTITION BY RANGE (changed_at);
