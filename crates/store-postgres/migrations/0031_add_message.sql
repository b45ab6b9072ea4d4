-- A message and everything its transaction writes, in one call: the same
-- steps, in the same order, as the shared statements of `add_message`
-- (crates/store/src/sql/messages.rs), which take eleven round trips on
-- PostgreSQL (ARCHITECTURE.md, "A message in one call on PostgreSQL"). The
-- caller works out the ids, the day, week, month and counter shard; the
-- conformance suite holds both bodies to the same behaviour.
--
-- Answers 'stored' with the author's person and the kinds of the jobs
-- enqueued, or, having written nothing, 'channel_changed', 'paused',
-- 'not_found' or 'claim_lost'. A message already stored fails with the
-- unique violation of `messages_external`, a conversation started meanwhile
-- with that of `conversations_external`, undoing the call.
CREATE FUNCTION add_message(
    _org uuid, _chatbot uuid, _conversation uuid, _start boolean, _conversation_key text,
    _id uuid, _role text, _text text, _channel text, _external_id text,
    _answers uuid, _channel_id uuid, _secrets bytea, _meta jsonb, _forwarded boolean,
    _tokens bigint, _at timestamptz,
    -- The author: found by this handle, or made as person `_new_person`.
    _sender_kind text, _sender_handle text, _sender_name text, _new_person uuid,
    -- [{id, org_id, kind, payload, priority, run_at, max_attempts, ordering_key, dedupe_key}]
    _jobs jsonb,
    _day bigint, _week bigint, _period text, _shard smallint,
    -- The claim of a keyed request, when the message is one's effect.
    _fence_caller text, _fence_key text, _fence_token text,
    _answer_status bigint, _answer_content_type text, _answer_body bytea)
RETURNS TABLE (outcome text, person_id uuid, job_kinds text[])
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _status text;
    _known boolean;
    _channel_as_checked boolean;
    _person uuid;
    _user boolean := _role = 'user';
    _first_day boolean := false;
    _first_week boolean := false;
    _kinds text[];
BEGIN
    SELECT c.status,
           EXISTS (SELECT 1 FROM conversations v
                   WHERE v.id = _conversation AND v.org_id = _org AND v.chatbot_id = _chatbot),
           _secrets IS NULL OR EXISTS (SELECT 1 FROM channels ch
                   WHERE ch.id = _channel_id AND ch.org_id = _org AND ch.secrets = _secrets)
    INTO _status, _known, _channel_as_checked
    FROM chatbots c WHERE c.id = _chatbot AND c.org_id = _org;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'not_found', NULL::uuid, NULL::text[];
        RETURN;
    END IF;
    IF NOT _channel_as_checked THEN
        RETURN QUERY SELECT 'channel_changed', NULL::uuid, NULL::text[];
        RETURN;
    END IF;
    IF _user AND _status = 'paused' THEN
        RETURN QUERY SELECT 'paused', NULL::uuid, NULL::text[];
        RETURN;
    END IF;
    IF NOT _start AND NOT _known THEN
        RETURN QUERY SELECT 'not_found', NULL::uuid, NULL::text[];
        RETURN;
    END IF;

    -- The keyed request's claim: the first write, so that a claim taken
    -- over leaves nothing written.
    IF _fence_caller IS NOT NULL THEN
        UPDATE idempotency_keys
        SET took_effect = true,
            status = COALESCE(_answer_status, status),
            content_type = CASE WHEN _answer_status IS NULL THEN content_type ELSE _answer_content_type END,
            body = CASE WHEN _answer_status IS NULL THEN body ELSE _answer_body END
        WHERE caller = _fence_caller AND key = _fence_key AND token = _fence_token;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'claim_lost', NULL::uuid, NULL::text[];
            RETURN;
        END IF;
    END IF;

    -- With the sender's key on the channel, the conversation is theirs
    -- there; one started meanwhile fails on `conversations_external`.
    IF _start THEN
        INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at,
                                   channel_id, external_key)
        VALUES (_conversation, _org, _chatbot, _channel, _at,
                CASE WHEN _conversation_key IS NOT NULL THEN _channel_id END, _conversation_key);
    END IF;

    -- The author, as `person_of`: a concurrent merge may delete the person
    -- between the lookup and the insert; the next round finds the handle
    -- where the merge moved it.
    IF _user AND _sender_kind IS NOT NULL THEN
        FOR _round IN 1..3 LOOP
            UPDATE people
            SET last_seen_at = COALESCE(_at, people.last_seen_at),
                name = COALESCE(people.name, _sender_name)
            FROM person_identities i
            WHERE i.org_id = _org AND i.kind = _sender_kind AND i.handle = _sender_handle
              AND people.id = i.person_id
            RETURNING people.id INTO _person;
            EXIT WHEN FOUND;
            INSERT INTO people (id, org_id, name, created_at, last_seen_at)
            VALUES (_new_person, _org, _sender_name, _at, _at);
            INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
            VALUES (_org, _sender_kind, _sender_handle, _new_person, _at)
            ON CONFLICT DO NOTHING;
            IF FOUND THEN
                _person := _new_person;
                EXIT;
            END IF;
            DELETE FROM people WHERE id = _new_person;
        END LOOP;
        IF _person IS NULL THEN
            RAISE EXCEPTION 'a person''s handle kept moving; try again'
                USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;

    INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel,
                          external_id, answers, channel_id, meta, created_at, person_id, forwarded)
    VALUES (_id, _org, _chatbot, _conversation, _role, _text, _channel,
            _external_id, _answers, _channel_id, _meta, _at, _person, _forwarded AND _user);

    IF _user THEN
        UPDATE conversations
        SET last_active_at = _at, person_id = COALESCE(conversations.person_id, _person)
        WHERE id = _conversation;
        IF _person IS NOT NULL THEN
            INSERT INTO person_days (org_id, day, person_id) VALUES (_org, _day, _person)
            ON CONFLICT DO NOTHING;
            _first_day := FOUND;
            -- Marked today already, they are marked in this week too.
            IF _first_day THEN
                INSERT INTO person_weeks (org_id, week, person_id) VALUES (_org, _week, _person)
                ON CONFLICT DO NOTHING;
                _first_week := FOUND;
            END IF;
        END IF;
    END IF;

    WITH stored AS (
        INSERT INTO jobs (id, org_id, kind, payload, state, priority, run_at, max_attempts,
                          ordering_key, dedupe_key, created_at, updated_at)
        SELECT j.id, j.org_id, j.kind, j.payload, 'queued', j.priority, COALESCE(j.run_at, _at),
               j.max_attempts, j.ordering_key, j.dedupe_key, _at, _at
        FROM jsonb_to_recordset(_jobs) AS j(id uuid, org_id uuid, kind text, payload jsonb,
                                            priority integer, run_at timestamptz,
                                            max_attempts integer, ordering_key text,
                                            dedupe_key text)
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING kind)
    SELECT array_agg(DISTINCT kind) INTO _kinds FROM stored;

    -- The counters many messages share last, just before the commit, so
    -- that concurrent messages wait on them briefly.
    INSERT INTO activity_days (org_id, chatbot_id, day, received, replied, started,
                               rated_up, rated_down, with_skills, shard)
    VALUES (_org, _chatbot, _day, _user::integer, (_role = 'assistant')::integer,
            _start::integer, 0, 0, 0, _shard)
    ON CONFLICT (org_id, day, chatbot_id, shard) DO UPDATE SET
        received = activity_days.received + excluded.received,
        replied = activity_days.replied + excluded.replied,
        started = activity_days.started + excluded.started;
    IF _user THEN
        INSERT INTO channel_days (org_id, day, channel, direct, forwarded, shard)
        VALUES (_org, _day, _channel, (NOT _forwarded)::integer, _forwarded::integer, _shard)
        ON CONFLICT (org_id, day, channel, shard) DO UPDATE SET
            direct = channel_days.direct + excluded.direct,
            forwarded = channel_days.forwarded + excluded.forwarded;
    END IF;
    IF _first_day THEN
        INSERT INTO people_counts (org_id, span, number, people, shard)
        SELECT _org, f.span, f.number, 1, _shard
        FROM (VALUES ('day', _day, true), ('week', _week, _first_week)) AS f(span, number, first)
        WHERE f.first
        ON CONFLICT (org_id, span, number, shard) DO UPDATE SET
            people = people_counts.people + excluded.people;
    END IF;
    IF _user OR _tokens > 0 THEN
        INSERT INTO usage_counters (org_id, period, messages, tokens, shard)
        VALUES (_org, _period, _user::integer, _tokens, _shard)
        ON CONFLICT (org_id, period, shard) DO UPDATE SET
            messages = usage_counters.messages + excluded.messages,
            tokens = usage_counters.tokens + excluded.tokens;
    END IF;

    RETURN QUERY SELECT 'stored', _person, COALESCE(_kinds, '{}');
END
$$;
