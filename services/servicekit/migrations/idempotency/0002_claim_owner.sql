-- Who holds a claim: a token drawn by the request that claimed it, drawn again by one that
-- takes a stale claim over. The answer is stored, and the claim released, only by the
-- holder of the token, in the transaction of its work; a request whose claim was taken
-- over rolls its work back and answers with what the other stored.
ALTER TABLE idempotency_keys ADD COLUMN owner UUID;
