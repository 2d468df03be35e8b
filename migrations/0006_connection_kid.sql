-- The signing key of a connection's latest token. A stream renewed in place
-- with a token of a newer key must outlive the revocation of the key it
-- connected with (a key rollover), also when the renewal reached another
-- instance than the one holding the stream.
ALTER TABLE connections ADD COLUMN kid text NOT NULL DEFAULT '';
