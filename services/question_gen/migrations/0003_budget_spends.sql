-- What a period has spent is counted from this service's own generations, all of them,
-- from the moment each commits: one of a company that had no limit yet counts as much as
-- the others, and none stops counting when its reservation goes (a release after a lost
-- reply). Billing's figure (`billed`) is only a floor: it still covers the
-- generations recorded before this migration without a cost (no limit then).

-- The cost of each generation not yet folded into its period's counter. The generation's
-- own statement writes it (whether or not its company has a limit); a fold adds it to
-- `budget_periods.settled`, which so holds every folded generation's cost, and deletes
-- it. Until then a reservation counts it here: spent is `settled + unfolded spends`.
CREATE TABLE budget_spends (
    generation_id UUID PRIMARY KEY,
    company_id UUID NOT NULL,
    period TEXT NOT NULL,
    cost NUMERIC(18, 4) NOT NULL CHECK (cost >= 0),
    reservation_id UUID
);

CREATE INDEX budget_spends_period ON budget_spends (company_id, period) INCLUDE (cost);

-- A reservation its generation settled. The generation's statement sets it under the
-- reservation's row lock, and only on a reservation still there; an expiry or a release
-- takes only an unsettled one. So a generation never counts on room already given away,
-- and a settled reservation leaves `reserved` only in the fold that counts its spend.
ALTER TABLE budget_reservations ADD COLUMN settled BOOLEAN NOT NULL DEFAULT false;

-- Reservations settled under the previous rule and not yet folded: their spends, so that
-- the next fold counts them as the previous one would have.
UPDATE budget_reservations r SET settled = true
WHERE EXISTS (SELECT FROM generations g WHERE g.reservation_id = r.id);

INSERT INTO budget_spends (generation_id, company_id, period, cost, reservation_id)
SELECT g.id, g.company_id, to_char(g.created_at AT TIME ZONE 'UTC', 'YYYY-MM'), g.cost, g.reservation_id
FROM generations g JOIN budget_reservations r ON r.id = g.reservation_id
WHERE g.cost IS NOT NULL;

-- The fold no longer looks generations up by their reservation.
DROP INDEX generations_reservation;
