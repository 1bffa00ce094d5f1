-- expect: invalid input syntax for type uuid: ""
-- sqlstate: 22P02
-- What the seed's audit trigger evaluates once app.current_user_id was set and then reset.
SELECT set_config('app.current_user_id', '', false);
SELECT current_setting('app.current_user_id', true)::uuid;
