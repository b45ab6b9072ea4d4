-- Every message of an organization adds to the same few counters (the
-- month's usage, the chatbot's and the channel's day, the day's and week's
-- people). An updated row stays locked until its transaction commits, so one
-- row per counter made an organization's messages commit one at a time.
-- Each counter is now split over shards: a writer adds to one of them, a
-- reader sums them all.
ALTER TABLE usage_counters ADD COLUMN shard smallint NOT NULL DEFAULT 0,
    DROP CONSTRAINT usage_counters_pkey, ADD PRIMARY KEY (org_id, period, shard);
ALTER TABLE activity_days ADD COLUMN shard smallint NOT NULL DEFAULT 0,
    DROP CONSTRAINT activity_days_pkey, ADD PRIMARY KEY (org_id, day, chatbot_id, shard);
ALTER TABLE channel_days ADD COLUMN shard smallint NOT NULL DEFAULT 0,
    DROP CONSTRAINT channel_days_pkey, ADD PRIMARY KEY (org_id, day, channel, shard);
ALTER TABLE people_counts ADD COLUMN shard smallint NOT NULL DEFAULT 0,
    DROP CONSTRAINT people_counts_pkey, ADD PRIMARY KEY (org_id, span, number, shard);
