-- Job dedupe keys kept unique by an index of the jobs that have one. The
-- column's UNIQUE constraint indexed every job, NULL keys too, and a job's
-- every change of state writes a new entry in each of its indexes (none of
-- them is a HOT update: `state` is in the claim's and the leases' partial
-- indexes). Few jobs have a dedupe key, so those entries were writes for
-- nothing: a claim of 32 jobs that completes 32 took 13% less CPU without
-- them (docs/PERFORMANCE.md, "The queue: no index entry for a job without a
-- dedupe key").
--
-- An insert names the index by its predicate (`ON CONFLICT (dedupe_key)
-- WHERE dedupe_key IS NOT NULL`), so `add_messages` is restated from
-- `add_messages_fewer_statements` with only that changed.
CREATE UNIQUE INDEX jobs_dedupe ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;
ALTER TABLE jobs DROP CONSTRAINT jobs_dedupe_key_key;

-- As in `add_messages_fewer_statements`, but for the jobs' conflict target.
CREATE OR REPLACE FUNCTION add_messages(_batch jsonb, _shard smallint, _alone boolean)
RETURNS TABLE (place bigint, outcome text, person uuid, job_kinds text[],
               failed_state text, failed_constraint text)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    _messages message_write[];
    _order integer[];
    _refusals text[];
    _taken integer[];
    _written message_stored[];
    _place integer;
    _s message_stored;
    _state text;
    _constraint text;
    -- Each message's answer, in the order they are taken.
    _answers message_answer[] := '{}';
    -- The messages stored, their places and what storing each did.
    _stored message_write[];
    _stored_places bigint[];
    _firsts message_stored[];
    -- The jobs added: each one's message's place, and its kind.
    _job_places bigint[];
    _job_kinds text[];
    -- Whether any message stored was its author's first of a day or week.
    _firsts_any boolean;
BEGIN
    -- In the select list, so that the records keep the array's order.
    _messages := ARRAY(SELECT jsonb_populate_recordset(NULL::message_write, _batch));
    _order := ARRAY(
        SELECT m.ordinality::integer
        FROM unnest(_messages) WITH ORDINALITY AS m
        ORDER BY m.start DESC,
                 CASE WHEN m.start THEN m.channel_id END,
                 CASE WHEN m.start THEN m.conversation_key END,
                 m.conversation, m.ordinality);

    IF NOT _alone THEN
        BEGIN
            _refusals := message_refusals(_messages);
            -- Those not refused, in the order taken, written together.
            _taken := ARRAY(SELECT o.place FROM unnest(_order) WITH ORDINALITY AS o(place, n)
                            WHERE _refusals[o.place] IS NULL ORDER BY o.n);
            IF cardinality(_taken) > 0 THEN
                _written := write_messages(ARRAY(
                    SELECT _messages[t.place] FROM unnest(_taken) WITH ORDINALITY AS t(place, n)
                    ORDER BY t.n));
            END IF;
            FOREACH _place IN ARRAY _order LOOP
                IF _refusals[_place] IS NULL THEN
                    _s := _written[array_position(_taken, _place)];
                ELSE
                    _s := ROW(_refusals[_place], NULL, false, false)::message_stored;
                END IF;
                _answers := _answers || ROW(_place, _s, NULL, NULL)::message_answer;
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            -- Undone; taken again below, each on its own.
            _answers := '{}';
        END;
    END IF;

    -- A batch is never empty: no answers yet means each is taken alone.
    IF cardinality(_answers) = 0 THEN
        FOREACH _place IN ARRAY _order LOOP
            _state := NULL;
            _constraint := NULL;
            IF _alone THEN
                _s := store_message(_messages[_place]);
            ELSE
                BEGIN
                    _s := store_message(_messages[_place]);
                EXCEPTION WHEN OTHERS THEN
                    GET STACKED DIAGNOSTICS _state = RETURNED_SQLSTATE,
                                            _constraint = CONSTRAINT_NAME;
                    _s := ROW('failed', NULL, false, false)::message_stored;
                END;
            END IF;
            _answers := _answers || ROW(_place, _s, _state, _constraint)::message_answer;
        END LOOP;
    END IF;

    SELECT array_agg(_messages[a.place] ORDER BY a.ordinality),
           array_agg(a.place ORDER BY a.ordinality),
           array_agg(a.stored ORDER BY a.ordinality),
           bool_or((a.stored).first_day OR (a.stored).first_week)
    INTO _stored, _stored_places, _firsts, _firsts_any
    FROM unnest(_answers) WITH ORDINALITY AS a
    WHERE (a.stored).outcome = 'stored';

    -- In the order the messages were stored: a job whose dedupe key is
    -- taken, by an earlier message of the batch too, is not added. Each
    -- job is read from its message's JSON once (`wanted`, referenced twice,
    -- is worked out once).
    WITH wanted AS (
        SELECT m.ordinality AS n, m.at, j.*
        FROM unnest(_stored) WITH ORDINALITY AS m,
             jsonb_to_recordset(m.jobs) AS j(id uuid, org_id uuid, kind text, payload jsonb,
                                             priority integer, run_at timestamptz,
                                             max_attempts integer, ordering_key text,
                                             dedupe_key text)),
    added AS (
        INSERT INTO jobs (id, org_id, kind, payload, state, priority, run_at, max_attempts,
                          ordering_key, dedupe_key, created_at, updated_at)
        SELECT w.id, w.org_id, w.kind, w.payload, 'queued', w.priority, COALESCE(w.run_at, w.at),
               w.max_attempts, w.ordering_key, w.dedupe_key, w.at, w.at
        FROM wanted w
        ORDER BY w.n
        ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING id, kind)
    SELECT array_agg(_stored_places[w.n]), array_agg(a.kind)
    INTO _job_places, _job_kinds
    FROM added AS a
    JOIN wanted w ON w.id = a.id;

    INSERT INTO activity_days (org_id, chatbot_id, day, received, replied, started,
                               rated_up, rated_down, with_skills, shard)
    SELECT m.org, m.chatbot, m.day, count(*) FILTER (WHERE m.role = 'user'),
           count(*) FILTER (WHERE m.role = 'assistant'), count(*) FILTER (WHERE m.start),
           0, 0, 0, _shard
    FROM unnest(_stored) AS m
    GROUP BY m.org, m.chatbot, m.day
    ORDER BY m.org, m.chatbot, m.day
    ON CONFLICT (org_id, day, chatbot_id, shard) DO UPDATE SET
        received = activity_days.received + excluded.received,
        replied = activity_days.replied + excluded.replied,
        started = activity_days.started + excluded.started;

    INSERT INTO channel_days (org_id, day, channel, direct, forwarded, shard)
    SELECT m.org, m.day, m.channel, count(*) FILTER (WHERE NOT m.forwarded),
           count(*) FILTER (WHERE m.forwarded), _shard
    FROM unnest(_stored) AS m
    WHERE m.role = 'user'
    GROUP BY m.org, m.day, m.channel
    ORDER BY m.org, m.day, m.channel
    ON CONFLICT (org_id, day, channel, shard) DO UPDATE SET
        direct = channel_days.direct + excluded.direct,
        forwarded = channel_days.forwarded + excluded.forwarded;

    IF _firsts_any THEN
        INSERT INTO people_counts (org_id, span, number, people, shard)
        SELECT f.org, f.span, f.number, count(*), _shard
        FROM (SELECT m.org, 'day' AS span, m.day AS number
              FROM unnest(_stored) WITH ORDINALITY AS m, unnest(_firsts) WITH ORDINALITY AS s
              WHERE m.ordinality = s.ordinality AND s.first_day
              UNION ALL
              SELECT m.org, 'week', m.week
              FROM unnest(_stored) WITH ORDINALITY AS m, unnest(_firsts) WITH ORDINALITY AS s
              WHERE m.ordinality = s.ordinality AND s.first_week) AS f
        GROUP BY f.org, f.span, f.number
        ORDER BY f.org, f.span, f.number
        ON CONFLICT (org_id, span, number, shard) DO UPDATE SET
            people = people_counts.people + excluded.people;
    END IF;

    INSERT INTO usage_counters (org_id, period, messages, tokens, shard)
    SELECT m.org, m.period, count(*) FILTER (WHERE m.role = 'user'), sum(m.tokens), _shard
    FROM unnest(_stored) AS m
    WHERE m.role = 'user' OR m.tokens > 0
    GROUP BY m.org, m.period
    ORDER BY m.org, m.period
    ON CONFLICT (org_id, period, shard) DO UPDATE SET
        messages = usage_counters.messages + excluded.messages,
        tokens = usage_counters.tokens + excluded.tokens;

    RETURN QUERY
    SELECT a.place::bigint, (a.stored).outcome, (a.stored).person,
           ARRAY(SELECT DISTINCT k.kind
                 FROM unnest(_job_places, _job_kinds) AS k(place, kind)
                 WHERE k.place = a.place),
           a.failed_state, a.failed_constraint
    FROM unnest(_answers) AS a;
END
$$;
