-- A subscriber token's publish claim (where its holder may send client
-- events) and info claim (what presence shows of it), carried by the
-- tickets made from it, as its channels are.
ALTER TABLE tickets ADD COLUMN publish text[] NOT NULL DEFAULT '{}';
ALTER TABLE tickets ADD COLUMN info json;
