-- Messages stored together: `add_messages` stores a batch of messages, each
-- as `add_message` did, in one transaction, and adds the batch's counts to
-- the shared counters once, at its end (ARCHITECTURE.md, "Messages stored
-- together on PostgreSQL"). Concurrent webhooks' messages are handed to it
-- together by this process; a message alone is a batch of one.

DROP FUNCTION add_message(
    uuid, uuid, uuid, boolean, text, uuid, text, text, text, text, uuid, uuid, bytea, jsonb,
    boolean, bigint, timestamptz, text, text, text, uuid, jsonb, bigint, bigint, text, smallint,
    text, text, text, bigint, text, bytea);

-- One message to store, with what the caller worked out for it (the ids,
-- the day, week and month of `at`).
CREATE TYPE message_write AS (
    org uuid, chatbot uuid, conversation uuid, start boolean, conversation_key text,
    id uuid, role text, text text, channel text, external_id text,
    answers uuid, channel_id uuid, secrets bytea, meta jsonb, forwarded boolean,
    tokens bigint, at timestamptz,
    -- The author: found by this handle, or made as person `new_person`.
    sender_kind text, sender_handle text, sender_name text, new_person uuid,
    -- [{id, org_id, kind, payload, priority, run_at, max_attempts, ordering_key, dedupe_key}]
    jobs jsonb,
    day bigint, week bigint, period text,
    -- The claim of a keyed request, when the message is one's effect.
    fence_caller text, fence_key text, fence_token text,
    answer_status bigint, answer_content_type text, answer_body bytea);

-- What storing one message did: 'stored', with its author and whether it
-- was the author's first of the day and of the week; or, having written
-- nothing, 'channel_changed', 'paused', 'not_found' or 'claim_lost'.
CREATE TYPE message_stored AS (
    outcome text, person uuid, first_day boolean, first_week boolean);

-- Everything one message writes but its jobs and the shared counters,
-- which `add_messages` writes for the whole batch. A message already
-- stored fails with the unique violation of `messages_external` (or the
-- messages' primary key), a conversation started meanwhile with that of
-- `conversations_external`.
CREATE FUNCTION store_message(_m message_write) RETURNS message_stored
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _status text;
    _known boolean;
    _channel_as_checked boolean;
    _person uuid;
    _user boolean := _m.role = 'user';
    _first_day boolean := false;
    _first_week boolean := false;
BEGIN
    SELECT c.status,
           EXISTS (SELECT 1 FROM conversations v
                   WHERE v.id = _m.conversation AND v.org_id = _m.org
                     AND v.chatbot_id = _m.chatbot),
           _m.secrets IS NULL OR EXISTS (SELECT 1 FROM channels ch
                   WHERE ch.id = _m.channel_id AND ch.org_id = _m.org
                     AND ch.secrets = _m.secrets)
    INTO _status, _known, _channel_as_checked
    FROM chatbots c WHERE c.id = _m.chatbot AND c.org_id = _m.org;
    IF NOT FOUND THEN
        RETURN ROW('not_found', NULL, false, false)::message_stored;
    END IF;
    IF NOT _channel_as_checked THEN
        RETURN ROW('channel_changed', NULL, false, false)::message_stored;
    END IF;
    IF _user AND _status = 'paused' THEN
        RETURN ROW('paused', NULL, false, false)::message_stored;
    END IF;
    IF NOT _m.start AND NOT _known THEN
        RETURN ROW('not_found', NULL, false, false)::message_stored;
    END IF;

    -- The keyed request's claim: the first write, so that a claim taken
    -- over leaves nothing written.
    IF _m.fence_caller IS NOT NULL THEN
        UPDATE idempotency_keys
        SET took_effect = true,
            status = COALESCE(_m.answer_status, status),
            content_type = CASE WHEN _m.answer_status IS NULL THEN content_type
                                ELSE _m.answer_content_type END,
            body = CASE WHEN _m.answer_status IS NULL THEN body ELSE _m.answer_body END
        WHERE caller = _m.fence_caller AND key = _m.fence_key AND token = _m.fence_token;
        IF NOT FOUND THEN
            RETURN ROW('claim_lost', NULL, false, false)::message_stored;
        END IF;
    END IF;

    -- With the sender's key on the channel, the conversation is theirs
    -- there; one started meanwhile fails on `conversations_external`.
    IF _m.start THEN
        INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at,
                                   channel_id, external_key)
        VALUES (_m.conversation, _m.org, _m.chatbot, _m.channel, _m.at,
                CASE WHEN _m.conversation_key IS NOT NULL THEN _m.channel_id END,
                _m.conversation_key);
    END IF;

    -- The author, as `person_of`: a concurrent merge may delete the person
    -- between the lookup and the insert; the next round finds the handle
    -- where the merge moved it.
    IF _user AND _m.sender_kind IS NOT NULL THEN
        FOR _round IN 1..3 LOOP
            UPDATE people
            SET last_seen_at = COALESCE(_m.at, people.last_seen_at),
                name = COALESCE(people.name, _m.sender_name)
            FROM person_identities i
            WHERE i.org_id = _m.org AND i.kind = _m.sender_kind AND i.handle = _m.sender_handle
              AND people.id = i.person_id
            RETURNING people.id INTO _person;
            EXIT WHEN FOUND;
            INSERT INTO people (id, org_id, name, created_at, last_seen_at)
            VALUES (_m.new_person, _m.org, _m.sender_name, _m.at, _m.at);
            INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
            VALUES (_m.org, _m.sender_kind, _m.sender_handle, _m.new_person, _m.at)
            ON CONFLICT DO NOTHING;
            IF FOUND THEN
                _person := _m.new_person;
                EXIT;
            END IF;
            DELETE FROM people WHERE id = _m.new_person;
        END LOOP;
        IF _person IS NULL THEN
            RAISE EXCEPTION 'a person''s handle kept moving; try again'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;

    INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel,
                          external_id, answers, channel_id, meta, created_at, person_id, forwarded)
    VALUES (_m.id, _m.org, _m.chatbot, _m.conversation, _m.role, _m.text, _m.channel,
            _m.external_id, _m.answers, _m.channel_id, _m.meta, _m.at, _person,
            _m.forwarded AND _user);

    IF _user THEN
        UPDATE conversations
        SET last_active_at = _m.at, person_id = COALESCE(conversations.person_id, _person)
        WHERE id = _m.conversation;
        IF _person IS NOT NULL THEN
            INSERT INTO person_days (org_id, day, person_id) VALUES (_m.org, _m.day, _person)
            ON CONFLICT DO NOTHING;
            _first_day := FOUND;
            -- Marked today already, they are marked in this week too.
            IF _first_day THEN
                INSERT INTO person_weeks (org_id, week, person_id)
                VALUES (_m.org, _m.week, _person)
                ON CONFLICT DO NOTHING;
                _first_week := FOUND;
            END IF;
        END IF;
    END IF;

    RETURN ROW('stored', _person, _first_day, _first_week)::message_stored;
END
$$;

-- Stores `_batch`, a JSON array of `message_write`s, in one transaction,
-- and answers one row per message, by its place in the array.
--
-- So that two batches take what they lock in one order, the messages that
-- start a conversation go first, in the order of the sender's key on the
-- channel (what two starts of one sender's conversation contend for), then
-- the others in conversation order. Each is stored inside a block of its
-- own, so that one that fails (a repeat, say) undoes only itself: it
-- answers 'failed' with the error's SQLSTATE and constraint. With
-- `_alone`, without that block: an error fails the call, as its caller
-- needs it. The jobs of what was stored are added after, in one statement,
-- and its counts last, one statement per counter, to the counters' shard
-- `_shard`, in key order: concurrent batches hold them briefly.
CREATE FUNCTION add_messages(_batch jsonb, _shard smallint, _alone boolean)
RETURNS TABLE (place bigint, outcome text, person uuid, job_kinds text[],
               failed_state text, failed_constraint text)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _r record;
    _m message_write;
    _place bigint;
    _s message_stored;
    _state text;
    _constraint text;
    -- Each message's answer, in the order they are taken.
    _places bigint[] := '{}';
    _outcomes text[] := '{}';
    _persons uuid[] := '{}';
    _states text[] := '{}';
    _constraints text[] := '{}';
    -- The messages stored, their places and what storing each did.
    _stored message_write[] := '{}';
    _stored_places bigint[] := '{}';
    _firsts message_stored[] := '{}';
    -- The jobs added: each one's message's place, and its kind.
    _job_places bigint[];
    _job_kinds text[];
BEGIN
    FOR _r IN
        SELECT m, e.place
        FROM jsonb_array_elements(_batch) WITH ORDINALITY AS e(message, place),
             jsonb_populate_record(NULL::message_write, e.message) AS m
        ORDER BY m.start DESC,
                 CASE WHEN m.start THEN m.channel_id END,
                 CASE WHEN m.start THEN m.conversation_key END,
                 m.conversation, e.place
    LOOP
        _m := _r.m;
        _place := _r.place;
        _state := NULL;
        _constraint := NULL;
        IF _alone THEN
            _s := store_message(_m);
        ELSE
            BEGIN
                _s := store_message(_m);
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS _state = RETURNED_SQLSTATE,
                                        _constraint = CONSTRAINT_NAME;
                _s := ROW('failed', NULL, false, false)::message_stored;
            END;
        END IF;
        _places := _places || _place;
        _outcomes := _outcomes || _s.outcome;
        _persons := _persons || _s.person;
        _states := _states || _state;
        _constraints := _constraints || _constraint;
        IF _s.outcome = 'stored' THEN
            _stored := _stored || _m;
            _stored_places := _stored_places || _place;
            _firsts := _firsts || _s;
        END IF;
    END LOOP;

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
    SELECT r.place, r.outcome, r.person,
           ARRAY(SELECT DISTINCT k.kind
                 FROM unnest(_job_places, _job_kinds) AS k(place, kind)
                 WHERE k.place = r.place),
           r.state, r.constr
    FROM unnest(_places, _outcomes, _persons, _states, _constraints)
         AS r(place, outcome, person, state, constr);
END
$$;
