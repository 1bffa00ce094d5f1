-- Enums, domains and the composite address type, as in the seed.
-- CREATE TYPE has no IF NOT EXISTS: check the catalog so the file can be applied twice.
DO $$
BEGIN
    IF to_regtype('user_role') IS NULL THEN
        CREATE TYPE user_role AS ENUM ('admin', 'user', 'guest');
    END IF;
    IF to_regtype('order_status') IS NULL THEN
        CREATE TYPE order_status AS ENUM ('pending', 'processing', 'shipped', 'delivered', 'cancelled');
    END IF;
    IF to_regtype('email') IS NULL THEN
        -- ~* is case-insensitive, so [A-Z]{2,} also accepts a lower-case TLD.
        CREATE DOMAIN email AS varchar(255)
            CHECK (VALUE ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z]{2,}$');
    END IF;
    IF to_regtype('positive_decimal') IS NULL THEN
        CREATE DOMAIN positive_decimal AS numeric(10, 2) CHECK (VALUE > 0);
    END IF;
    IF to_regtype('address') IS NULL THEN
        CREATE TYPE address AS (
            street      varchar(255),
            city        varchar(100),
            state       varchar(50),
            postal_code varchar(20),
            country     varchar(2)
        );
    END IF;
END
$$;
