-- Where each generation's token figures come from, and how a streamed one ended.
--   cached_prompt_tokens  of prompt_tokens, those the provider served from its cache
--   reasoning_tokens      of completion_tokens, those the model spent reasoning
--   usage_source          'provider' (its own usage) or 'estimated' (counted by us)
--   stream_end            NULL for a JSON answer; for a stream, what ended it:
--                         'completed', 'disconnected', 'failed', 'timeout' or 'stopped'
--                         (the service shutting down). question_count is what was
--                         written to the client, and billed.
ALTER TABLE generations
    ADD COLUMN cached_prompt_tokens INTEGER,
    ADD COLUMN reasoning_tokens INTEGER,
    ADD COLUMN usage_source TEXT CHECK (usage_source IN ('provider', 'estimated')),
    ADD COLUMN stream_end TEXT
        CHECK (stream_end IN ('completed', 'disconnected', 'failed', 'timeout', 'stopped'));
