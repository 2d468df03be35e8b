-- A long-poll subscriber's membership of a presence channel: no connection
-- holds it, so it lives until expires_at, which each of its polls pushes
-- forward, whichever instance answers them; any instance sweeps it once it
-- has passed. NULL for the members that a connection holds, which live with
-- their instance.
ALTER TABLE presence_members ADD COLUMN expires_at timestamptz;
