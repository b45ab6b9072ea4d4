-- Messages stored together, looked up once: `add_messages` looks up why any
-- message of its batch would be refused (its chatbot, channel, conversation,
-- or its provider id stored already) in one statement for the whole batch,
-- then writes the others in one block, instead of a statement and a block
-- (a subtransaction) per message. If anything fails in that block (a repeat
-- stored meanwhile by another batch, a conversation started meanwhile, a
-- deadlock), the block is undone and each message is taken again in a block
-- of its own, as before (ARCHITECTURE.md, "Messages stored together on
-- PostgreSQL").

-- Why each message of `_batch` would be refused, by its place in the
-- array: NULL to store it; 'not_found' (no such chatbot in the org, or a
-- conversation it does not have), 'channel_changed' (the channel's secrets
-- are no longer those it was checked with), 'paused' (someone's message to
-- a paused chatbot), or 'repeat' (the channel has a message of that
-- provider id already). A keyed request's message is not looked up as a
-- repeat: its claim is checked first (`write_messages`), and a repeat of it
-- fails on `messages_external`.
--
-- One statement, each message a few index look-ups. The planner settings
-- keep it so: a plan made while the tables were small (and kept, as this
-- function's plans are) would otherwise read whole tables into hashes.
CREATE FUNCTION message_refusals(_batch message_write[]) RETURNS text[]
LANGUAGE plpgsql STABLE
SET enable_hashjoin = off
SET enable_mergejoin = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN ARRAY(
        SELECT CASE
                   WHEN c.id IS NULL THEN 'not_found'
                   WHEN b.secrets IS NOT NULL AND ch.id IS NULL THEN 'channel_changed'
                   WHEN b.role = 'user' AND c.status = 'paused' THEN 'paused'
                   WHEN NOT b.start AND v.id IS NULL THEN 'not_found'
                   WHEN b.fence_caller IS NULL AND x.id IS NOT NULL THEN 'repeat'
               END
        FROM unnest(_batch) WITH ORDINALITY AS b
        LEFT JOIN chatbots c ON c.id = b.chatbot AND c.org_id = b.org
        LEFT JOIN channels ch
            ON ch.id = b.channel_id AND ch.org_id = b.org AND ch.secrets = b.secrets
        LEFT JOIN conversations v
            ON v.id = b.conversation AND v.org_id = b.org AND v.chatbot_id = b.chatbot
        LEFT JOIN messages x ON x.channel_id = b.channel_id AND x.external_id = b.external_id
        ORDER BY b.ordinality);
END
$$;

-- The author of a message, found by the sender's handle or made as person
-- `new_person`, as `person_of`: a concurrent merge may delete the person
-- between the lookup and the insert; the next round finds the handle where
-- the merge moved it.
CREATE FUNCTION author_of(_m message_write) RETURNS uuid
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _person uuid;
BEGIN
    FOR _round IN 1..3 LOOP
        UPDATE people
        SET last_seen_at = COALESCE(_m.at, people.last_seen_at),
            name = COALESCE(people.name, _m.sender_name)
        FROM person_identities i
        WHERE i.org_id = _m.org AND i.kind = _m.sender_kind AND i.handle = _m.sender_handle
          AND people.id = i.person_id
        RETURNING people.id INTO _person;
        IF FOUND THEN
            RETURN _person;
        END IF;
        INSERT INTO people (id, org_id, name, created_at, last_seen_at)
        VALUES (_m.new_person, _m.org, _m.sender_name, _m.at, _m.at);
        INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
        VALUES (_m.org, _m.sender_kind, _m.sender_handle, _m.new_person, _m.at)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            RETURN _m.new_person;
        END IF;
        DELETE FROM people WHERE id = _m.new_person;
    END LOOP;
    RAISE EXCEPTION 'a person''s handle kept moving; try again'
        USING ERRCODE = 'serialization_failure';
END
$$;

-- Everything the messages of `_batch` write but their jobs and the shared
-- counters, once `message_refusals` found nothing against them; what
-- writing each did, by its place: 'stored', with its author and whether it
-- was the author's first of the day and of the week; or 'claim_lost',
-- having written nothing. Set-based: one statement per step for the whole
-- batch, not per message, but for keyed requests' claims and authors not
-- yet known. A message stored meanwhile fails with the unique violation of
-- `messages_external` (or the messages' primary key), a conversation
-- started meanwhile (or twice in the batch) with that of
-- `conversations_external`, and the caller's block undoes it all.
--
-- What is locked, in this order: the conversations started, by the
-- sender's key; the authors known, by id; the conversations written to, by
-- id. The planner settings keep each step a few index look-ups per
-- message, in the order the statement gives.
CREATE FUNCTION write_messages(_batch message_write[]) RETURNS message_stored[]
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
BEGIN
    -- The keyed requests' claims: the first write, so that a claim taken
    -- over leaves its message unwritten.
    FOR _place IN 1.._n LOOP
        _m := _batch[_place];
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
    INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at,
                               channel_id, external_key)
    SELECT m.conversation, m.org, m.chatbot, m.channel, m.at,
           CASE WHEN m.conversation_key IS NOT NULL THEN m.channel_id END, m.conversation_key
    FROM unnest(_batch) WITH ORDINALITY AS m
    WHERE m.start AND _written[m.ordinality]
    ORDER BY m.channel_id, m.conversation_key, m.ordinality;

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
    SELECT array_agg(s.id ORDER BY g.place)
    INTO _persons
    FROM generate_series(1, _n) AS g(place)
    LEFT JOIN (SELECT seen.id, unnest(seen.places) AS place FROM seen) AS s
           ON s.place = g.place;

    -- The others, one by one (in a batch, a new sender's second message
    -- finds the person their first made).
    FOR _place IN 1.._n LOOP
        _m := _batch[_place];
        IF _written[_place] AND _m.role = 'user' AND _m.sender_kind IS NOT NULL
           AND _persons[_place] IS NULL THEN
            _persons[_place] := author_of(_m);
        END IF;
    END LOOP;

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

-- One message looked up and written, by itself: what storing it did, or
-- its refusal ('not_found', 'channel_changed', 'paused', 'repeat',
-- 'claim_lost'), having written nothing.
CREATE OR REPLACE FUNCTION store_message(_m message_write) RETURNS message_stored
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _refused text;
BEGIN
    _refused := (message_refusals(ARRAY[_m]))[1];
    IF _refused IS NOT NULL THEN
        RETURN ROW(_refused, NULL, false, false)::message_stored;
    END IF;
    RETURN (write_messages(ARRAY[_m]))[1];
END
$$;

-- What storing the message at `place` of a batch did, and the error it
-- failed with, if it failed.
CREATE TYPE message_answer AS (
    place integer, stored message_stored, failed_state text, failed_constraint text);

-- Stores `_batch`, a JSON array of `message_write`s, in one transaction,
-- and answers one row per message, by its place in the array.
--
-- So that two batches take what they lock in one order, the messages that
-- start a conversation go first, in the order of the sender's key on the
-- channel (what two starts of one sender's conversation contend for), then
-- the others in conversation order. The refusals are looked up for the
-- whole batch, and the rest written in one block; if that block fails, it
-- is undone and each message is taken again, looked up and written inside
-- a block of its own, so that one that fails undoes only itself: it
-- answers 'failed' with the error's SQLSTATE and constraint. With
-- `_alone`, without any block: an error fails the call, as its caller
-- needs it. The jobs of what was stored are added after, in one statement,
-- and its counts last, one statement per counter, to the counters' shard
-- `_shard`, in key order: concurrent batches hold them briefly.
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
BEGIN
    _messages := ARRAY(
        SELECT jsonb_populate_record(NULL::message_write, e.message)
        FROM jsonb_array_elements(_batch) WITH ORDINALITY AS e(message, place)
        ORDER BY e.place);
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
           array_agg(a.stored ORDER BY a.ordinality)
    INTO _stored, _stored_places, _firsts
    FROM unnest(_answers) WITH ORDINALITY AS a
    WHERE (a.stored).outcome = 'stored';

    -- In the order the messages were stored: a job whose dedupe key is
    -- taken, by an earlier message of the batch too, is not added.
    WITH added AS (
        INSERT INTO jobs (id, org_id, kind, payload, state, priority, run_at, max_attempts,
                          ordering_key, dedupe_key, created_at, updated_at)
        SELECT j.id, j.org_id, j.kind, j.payload, 'queued', j.priority, COALESCE(j.run_at, m.at),
               j.max_attempts, j.ordering_key, j.dedupe_key, m.at, m.at
        FROM unnest(_stored) WITH ORDINALITY AS m,
             jsonb_to_recordset(m.jobs) AS j(id uuid, org_id uuid, kind text, payload jsonb,
                                             priority integer, run_at timestamptz,
                                             max_attempts integer, ordering_key text,
                                             dedupe_key text)
        ORDER BY m.ordinality
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id, kind)
    SELECT array_agg(_stored_places[m.ordinality]), array_agg(a.kind)
    INTO _job_places, _job_kinds
    FROM added AS a,
         unnest(_stored) WITH ORDINALITY AS m,
         jsonb_to_recordset(m.jobs) AS j(id uuid)
    WHERE j.id = a.id;

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
