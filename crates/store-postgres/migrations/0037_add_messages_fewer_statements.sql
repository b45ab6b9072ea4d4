-- Messages stored together, in fewer statements: PostgreSQL's time per
-- batch sets the webhook pace, and a share of it is the start-up of each
-- statement (docs/PERFORMANCE.md, "Webhooks: fewer statements per
-- batch"). Restated from `add_messages_looked_up`, with these changes:
--
-- - Senders not known yet are made together: their people and handles in
--   one statement for the batch, instead of three statements per message.
--   Only a sender whose handle another transaction took meanwhile is taken
--   one by one, as before (`author_of`).
-- - A statement the batch has nothing for is skipped: the conversations'
--   insert when no message starts one, the new senders' when all are
--   known, the people counts when no message was its author's first of a
--   day or week.
-- - The batch is read with one `jsonb_populate_recordset`, not one
--   `jsonb_populate_record` per message.
-- - The jobs are read from their JSON once; the statement that added them
--   joined its `RETURNING` back to every message's jobs, reading each
--   message's JSON once per job added.

-- As `add_messages_looked_up`, but for the senders not yet known, and the
-- conversations' insert skipped when no message starts one. What is
-- locked, in this order: the conversations started, by the sender's key;
-- the authors known, by id; the new senders' handles, by handle; the
-- conversations written to, by id.
CREATE OR REPLACE FUNCTION write_messages(_batch message_write[]) RETURNS message_stored[]
LANGUAGE plpgsql VOLATILE
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    _n integer := cardinality(_batch);
    -- By place: written (not a lost claim), its author, its author's first
    -- of the day and of the week.
    _written boolean[] := array_fill(true, ARRAY[_n]);
    _persons uuid[];
    _first_day boolean[];
    _first_week boolean[];
    _m message_write;
    _starts boolean := false;
    _unknown boolean;
    -- The senders made together: each message's place and author, and the
    -- people made whose handle was taken meanwhile.
    _made_places integer[];
    _made_persons uuid[];
    _unclaimed uuid[];
BEGIN
    -- The keyed requests' claims: the first write, so that a claim taken
    -- over leaves its message unwritten.
    FOR _place IN 1.._n LOOP
        _m := _batch[_place];
        _starts := _starts OR _m.start;
        CONTINUE WHEN _m.fence_caller IS NULL;
        UPDATE idempotency_keys
        SET took_effect = true,
            status = COALESCE(_m.answer_status, status),
            content_type = CASE WHEN _m.answer_status IS NULL THEN content_type
                                ELSE _m.answer_content_type END,
            body = CASE WHEN _m.answer_status IS NULL THEN body ELSE _m.answer_body END
        WHERE caller = _m.fence_caller AND key = _m.fence_key AND token = _m.fence_token;
        _written[_place] := FOUND;
    END LOOP;

    -- With the sender's key on the channel, the conversation is theirs
    -- there.
    IF _starts THEN
        INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at,
                                   channel_id, external_key)
        SELECT m.conversation, m.org, m.chatbot, m.channel, m.at,
               CASE WHEN m.conversation_key IS NOT NULL THEN m.channel_id END, m.conversation_key
        FROM unnest(_batch) WITH ORDINALITY AS m
        WHERE m.start AND _written[m.ordinality]
        ORDER BY m.channel_id, m.conversation_key, m.ordinality;
    END IF;

    -- The authors known by their handles: each one's row written once.
    WITH authors AS (
        SELECT i.person_id AS person, array_agg(m.ordinality::integer) AS places,
               max(m.at) AS at,
               (array_agg(m.sender_name) FILTER (WHERE m.sender_name IS NOT NULL))[1] AS name
        FROM unnest(_batch) WITH ORDINALITY AS m
        JOIN person_identities i
          ON i.org_id = m.org AND i.kind = m.sender_kind AND i.handle = m.sender_handle
        WHERE m.role = 'user' AND _written[m.ordinality]
        GROUP BY i.person_id
        ORDER BY i.person_id),
    seen AS (
        UPDATE people p
        SET last_seen_at = COALESCE(a.at, p.last_seen_at), name = COALESCE(p.name, a.name)
        FROM authors a
        WHERE p.id = a.person
        RETURNING p.id, a.places)
    SELECT array_agg(s.id ORDER BY m.ordinality),
           bool_or(s.id IS NULL AND m.role = 'user' AND m.sender_kind IS NOT NULL
                   AND _written[m.ordinality])
    INTO _persons, _unknown
    FROM unnest(_batch) WITH ORDINALITY AS m
    LEFT JOIN (SELECT seen.id, unnest(seen.places) AS place FROM seen) AS s
           ON s.place = m.ordinality;

    IF _unknown THEN
        -- The senders not known: each made once, as the person
        -- `new_person` of their first message in the batch, seen last at
        -- their last. A handle another transaction added meanwhile is not
        -- taken (that one's insert is waited for), and the person made for
        -- it is deleted below.
        WITH senders AS (
            SELECT m.org, m.sender_kind AS kind, m.sender_handle AS handle,
                   (array_agg(m.new_person ORDER BY m.ordinality))[1] AS person,
                   (array_agg(m.sender_name ORDER BY m.ordinality)
                        FILTER (WHERE m.sender_name IS NOT NULL))[1] AS name,
                   (array_agg(m.at ORDER BY m.ordinality))[1] AS first_at,
                   max(m.at) AS last_at,
                   array_agg(m.ordinality::integer) AS places
            FROM unnest(_batch) WITH ORDINALITY AS m
            WHERE _written[m.ordinality] AND m.role = 'user' AND m.sender_kind IS NOT NULL
              AND _persons[m.ordinality] IS NULL
            GROUP BY m.org, m.sender_kind, m.sender_handle),
        made AS (
            INSERT INTO people (id, org_id, name, created_at, last_seen_at)
            SELECT s.person, s.org, s.name, s.first_at, s.last_at
            FROM senders s
            ORDER BY s.person
            RETURNING id),
        claimed AS (
            INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
            SELECT s.org, s.kind, s.handle, s.person, s.first_at
            FROM senders s
            ORDER BY s.org, s.kind, s.handle
            ON CONFLICT DO NOTHING
            RETURNING person_id)
        SELECT array_agg(p.place) FILTER (WHERE c.person_id IS NOT NULL),
               array_agg(s.person) FILTER (WHERE c.person_id IS NOT NULL),
               array_agg(DISTINCT s.person) FILTER (WHERE c.person_id IS NULL)
        INTO _made_places, _made_persons, _unclaimed
        FROM senders s
        LEFT JOIN claimed c ON c.person_id = s.person
        CROSS JOIN LATERAL unnest(s.places) AS p(place);
        FOR _i IN 1..COALESCE(cardinality(_made_places), 0) LOOP
            _persons[_made_places[_i]] := _made_persons[_i];
        END LOOP;
        -- Those whose handle was taken meanwhile, one by one.
        IF _unclaimed IS NOT NULL THEN
            DELETE FROM people WHERE id = ANY (_unclaimed);
            FOR _place IN 1.._n LOOP
                _m := _batch[_place];
                IF _written[_place] AND _m.role = 'user' AND _m.sender_kind IS NOT NULL
                   AND _persons[_place] IS NULL THEN
                    _persons[_place] := author_of(_m);
                END IF;
            END LOOP;
        END IF;
    END IF;

    INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel,
                          external_id, answers, channel_id, meta, created_at, person_id, forwarded)
    SELECT m.id, m.org, m.chatbot, m.conversation, m.role, m.text, m.channel,
           m.external_id, m.answers, m.channel_id, m.meta, m.at, _persons[m.ordinality],
           m.forwarded AND m.role = 'user'
    FROM unnest(_batch) WITH ORDINALITY AS m
    WHERE _written[m.ordinality]
    ORDER BY m.ordinality;

    UPDATE conversations c
    SET last_active_at = u.at, person_id = COALESCE(c.person_id, u.person)
    FROM (SELECT m.conversation, max(m.at) AS at,
                 (array_agg(_persons[m.ordinality] ORDER BY m.ordinality)
                      FILTER (WHERE _persons[m.ordinality] IS NOT NULL))[1] AS person
          FROM unnest(_batch) WITH ORDINALITY AS m
          WHERE m.role = 'user' AND _written[m.ordinality]
          GROUP BY m.conversation
          ORDER BY m.conversation) AS u
    WHERE c.id = u.conversation;

    -- Each author's day, and, marked today for the first time, their week:
    -- the first of either is their first message of the batch in it.
    WITH days AS (
        SELECT m.org, m.day, min(m.week) AS week, _persons[m.ordinality] AS person,
               min(m.ordinality)::integer AS place
        FROM unnest(_batch) WITH ORDINALITY AS m
        WHERE m.role = 'user' AND _written[m.ordinality] AND _persons[m.ordinality] IS NOT NULL
        GROUP BY m.org, m.day, _persons[m.ordinality]),
    first_days AS (
        INSERT INTO person_days (org_id, day, person_id)
        SELECT d.org, d.day, d.person FROM days d
        ORDER BY d.org, d.day, d.person
        ON CONFLICT DO NOTHING
        RETURNING org_id, day, person_id),
    first_weeks AS (
        INSERT INTO person_weeks (org_id, week, person_id)
        SELECT DISTINCT d.org, d.week, d.person
        FROM days d
        JOIN first_days f ON f.org_id = d.org AND f.day = d.day AND f.person_id = d.person
        ORDER BY d.org, d.week, d.person
        ON CONFLICT DO NOTHING
        RETURNING org_id, week, person_id)
    SELECT array_agg(f.person_id IS NOT NULL ORDER BY g.place),
           array_agg(w.place IS NOT NULL ORDER BY g.place)
    INTO _first_day, _first_week
    FROM generate_series(1, _n) AS g(place)
    LEFT JOIN days d ON d.place = g.place
    LEFT JOIN first_days f ON f.org_id = d.org AND f.day = d.day AND f.person_id = d.person
    LEFT JOIN (SELECT min(d.place) AS place
               FROM first_weeks w
               JOIN days d ON d.org = w.org_id AND d.week = w.week AND d.person = w.person_id
               JOIN first_days f
                 ON f.org_id = d.org AND f.day = d.day AND f.person_id = d.person
               GROUP BY w.org_id, w.week, w.person_id) AS w ON w.place = g.place;

    RETURN ARRAY(
        SELECT CASE WHEN _written[g.place]
                    THEN ROW('stored', _persons[g.place], _first_day[g.place],
                             _first_week[g.place])::message_stored
                    ELSE ROW('claim_lost', NULL, false, false)::message_stored
               END
        FROM generate_series(1, _n) AS g(place)
        ORDER BY g.place);
END
$$;

-- As `add_messages_looked_up`, but for the reading of the batch, the jobs'
-- statement, and the people counts skipped when no message was its
-- author's first of a day or week.
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
        ON CONFLICT (dedupe_key) DO NOTHING
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
