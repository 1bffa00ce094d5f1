-- expect: unique constraint on partitioned table must include all partitioning columns
-- sqlstate: 0A000
-- The seed's products table (abridged to the failing part): a PRIMARY KEY on id alone.
CREATE TABLE seed_products (
    id UUID PRIMARY KEY DEFAULT uuid_generate_v4(),
    sku VARCHAR(50) NOT NULL UNIQUE,
    name VARCHAR(200) NOT NULL,
    price MONEY NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP
) PARTITION BY RANGE (created_at);
