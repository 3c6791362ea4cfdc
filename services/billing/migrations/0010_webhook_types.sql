-- Each delivery says what kind of webhook it carries (its body's `type`), so that the
-- deliveries list names it. Low-balance alerts were kept under a period of their own per
-- alert (`credits-low-balance:<n>`, threshold 1) to fit the budget webhooks' key: they
-- keep that key, and are now listed as what they are.
ALTER TABLE webhook_deliveries
    ADD COLUMN type TEXT NOT NULL DEFAULT 'budget.threshold_reached';

UPDATE webhook_deliveries SET type = 'credits.low_balance'
WHERE period LIKE 'credits-low-balance:%';
