-- A job's title, from its JobCreated, for the people who read the console, statements and
-- the CSV. NULL for a job known before events carried titles, until an event names it.
ALTER TABLE known_jobs
    ADD COLUMN title TEXT CONSTRAINT known_jobs_title_length
        CHECK (char_length(title) BETWEEN 1 AND 200);
