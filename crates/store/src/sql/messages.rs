//! [`MessageStore`], for every backend.

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Utc};
use steward_domain::*;

use crate::records::{end_of_time, start_of_time};
use crate::sql::{Db, Row, SqlBackend, Statement, commit, insert_job, rows, sql};
use crate::*;

/// Newest first, strictly before the upper position, at or after `from`: one
/// range scan of `messages_history` whatever the page.
const HISTORY_PAGE: &str = concat!(
    select_message!(),
    " FROM messages
     WHERE org_id = $1 AND chatbot_id = $2 AND (created_at, id) < ($3, $4) AND created_at >= $5
     ORDER BY created_at DESC, id DESC
     LIMIT $6"
);

/// Conversations with their size and latest message: the correlated reads go
/// through `messages_conversation`, for the rows of one page only.
pub(crate) const CONVERSATIONS: &str =
    "SELECT c.id, c.chatbot_id, c.channel, c.person_id, c.created_at, c.handed_off_at,
        (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) AS messages,
        (SELECT m.created_at FROM messages m WHERE m.conversation_id = c.id
          ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS last_at,
        (SELECT m.role FROM messages m WHERE m.conversation_id = c.id
          ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS last_role,
        (SELECT m.text FROM messages m WHERE m.conversation_id = c.id
          ORDER BY m.created_at DESC, m.id DESC LIMIT 1) AS last_text
     FROM conversations c";

/// Up to this many messages matching a text filter are read from the word
/// index; more, and the newest conversations are tested one by one first.
pub const WORD_INDEX_READ_LIMIT: i64 = 1000;

/// How many conversations a text filter many messages match tests one by
/// one before it decides whether to go on (see `common_words_page`): about
/// 10 ms on PostgreSQL, 1.5 ms on SQLite, over a million messages.
pub const SCAN_WINDOW: i64 = 250;

/// A window that finds the words goes on to the next while this many more
/// windows like it would fill the page.
const WINDOWS_AHEAD: usize = 4;

/// The words of a text filter: runs of letters and digits, lowercased, as
/// both word indexes split text.
fn words_of(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// True when conversation `c` holds a message whose lowercased text is LIKE
/// `$7`.
const LIKE_CONDITION: &str = "(SELECT 1 FROM messages t WHERE t.conversation_id = c.id
     AND LOWER(t.text) LIKE $7 ESCAPE '\\' LIMIT 1) IS NOT NULL";

/// How a text filter selects conversations (see `list_conversations`).
enum TextFilter {
    /// Few messages hold the words: conversations holding one of them, read
    /// from the word index with this query.
    Indexed(String),
    /// Text without a letter or digit ("%"), matched as written by this
    /// LIKE pattern.
    Literal(String),
    /// Many messages hold the words: conversations are tested newest first
    /// by a LIKE of the words in order (`pattern`), the words then checked
    /// in the messages it matched as the index matches them, until they turn
    /// up too rarely; then the rest are read from the index (`query`).
    Common {
        pattern: String,
        words: Vec<String>,
        query: String,
    },
}

/// The filter for `text`: whether few messages hold its words is counted in
/// the word index, no further than [`WORD_INDEX_READ_LIMIT`].
async fn text_filter<B: SqlBackend>(
    db: &mut B::Read,
    org: OrgId,
    text: &str,
) -> StoreResult<TextFilter> {
    let words = words_of(text);
    if words.is_empty() {
        return Ok(TextFilter::Literal(contains_pattern(text)));
    }
    // The whole last word first: an index counts a word's messages quickly,
    // a beginning's only by merging every word that starts with it.
    for prefix in [false, true] {
        let matching: i64 = db
            .fetch_one(
                sql(B::WORDS.count)
                    .bind(org)
                    .bind(B::words_query(&words, prefix))
                    .bind(WORD_INDEX_READ_LIMIT),
            )
            .await?
            .get("n")?;
        if matching >= WORD_INDEX_READ_LIMIT {
            return Ok(TextFilter::Common {
                // Letters and digits only: nothing to escape.
                pattern: format!("%{}%", words.join("%")),
                query: B::words_query(&words, true),
                words,
            });
        }
    }
    Ok(TextFilter::Indexed(B::words_query(&words, true)))
}

/// The conversations among `candidates` one of whose messages LIKE
/// `pattern` matched holds `words`, in the candidates' order: one query for
/// all of them.
async fn holding_words<B: SqlBackend>(
    db: &mut B::Read,
    candidates: Vec<ConversationSummary>,
    pattern: &str,
    words: &[String],
) -> StoreResult<Vec<ConversationSummary>> {
    if candidates.is_empty() {
        return Ok(candidates);
    }
    let placeholders = (2..candidates.len() + 2)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut statement = sql(format!(
        "SELECT conversation_id, text FROM messages
         WHERE conversation_id IN ({placeholders}) AND LOWER(text) LIKE $1 ESCAPE '\\'"
    ))
    .bind(pattern);
    for candidate in &candidates {
        statement = statement.bind(candidate.id);
    }
    let mut holding = std::collections::HashSet::new();
    for row in db.fetch_all(statement).await? {
        if holds_words(&row.get::<String>("text")?, words) {
            holding.insert(row.get::<ConversationId>("conversation_id")?);
        }
    }
    Ok(candidates
        .into_iter()
        .filter(|c| holding.contains(&c.id))
        .collect())
}

/// A position in the conversation list's order.
type Position = (DateTime<Utc>, uuid::Uuid);

/// Up to `limit` of the conversations `query` selects (its text aside) that
/// `condition` holds for (its value bound as `$7`), newest first, strictly
/// before `upper` and from `from` on.
#[allow(clippy::too_many_arguments)]
async fn conversation_page<B: SqlBackend>(
    db: &mut B::Read,
    scope: &TenantScope,
    query: &ConversationQuery,
    condition: &str,
    value: Option<&str>,
    upper: Position,
    from: DateTime<Utc>,
    limit: usize,
) -> StoreResult<Vec<ConversationSummary>> {
    db.fetch_all(
        sql(format!(
            "{CONVERSATIONS}
             WHERE {CONVERSATION_FILTERS}
               AND ($7 IS NULL OR {condition})
             ORDER BY c.created_at DESC, c.id DESC
             LIMIT $8"
        ))
        .bind_filters(scope, query, from, upper)
        .bind(value)
        .bind(limit as i64),
    )
    .await?
    .iter()
    .map(rows::conversation_summary)
    .collect()
}

/// A page of the conversations holding words many messages hold (see
/// [`TextFilter::Common`]): `words` are (the LIKE pattern, the words, the
/// index query); `bounds` (before this position, from this time, this many).
///
/// Windows of [`SCAN_WINDOW`] conversations are tested one by one, newest
/// first, while they find the words often enough to fill the page within a
/// few more windows (as they do when the words are common); once a window
/// finds them too rarely, the rest of the page is read from the index, so
/// that words only old conversations hold cost what reading their matches
/// costs rather than a test of every conversation.
async fn common_words_page<B: SqlBackend>(
    db: &mut B::Read,
    scope: &TenantScope,
    query: &ConversationQuery,
    (pattern, words, index_query): (&str, &[String], &str),
    (mut upper, from, limit): (Position, DateTime<Utc>, usize),
) -> StoreResult<Vec<ConversationSummary>> {
    let mut found = Vec::new();
    loop {
        // The window: the conversations started since the SCAN_WINDOW-th
        // newest before `upper` did (all the rest when there are fewer).
        let floor: Option<DateTime<Utc>> = db
            .fetch_optional(
                sql(format!(
                    "SELECT c.created_at FROM conversations c WHERE {CONVERSATION_FILTERS}
                     ORDER BY c.created_at DESC, c.id DESC LIMIT 1 OFFSET $7"
                ))
                .bind_filters(scope, query, from, upper)
                .bind(SCAN_WINDOW - 1),
            )
            .await?
            .map(|row| row.get("created_at"))
            .transpose()?;
        let before_window = found.len();
        loop {
            let candidates = conversation_page::<B>(
                db,
                scope,
                query,
                LIKE_CONDITION,
                Some(pattern),
                upper,
                floor.unwrap_or(from),
                limit,
            )
            .await?;
            let exhausted = candidates.len() < limit;
            if let Some(last) = candidates.last() {
                upper = (last.created_at, last.id.as_uuid());
            }
            found.extend(holding_words::<B>(db, candidates, pattern, words).await?);
            if found.len() >= limit {
                found.truncate(limit);
                return Ok(found);
            }
            if exhausted {
                break;
            }
        }
        let Some(floor) = floor else {
            return Ok(found);
        };
        // Everything since `floor` was tested: the next window is older.
        upper = (floor, uuid::Uuid::nil());
        let in_window = found.len() - before_window;
        if in_window * WINDOWS_AHEAD < limit - found.len() {
            found.extend(
                conversation_page::<B>(
                    db,
                    scope,
                    query,
                    B::WORDS.indexed,
                    Some(index_query),
                    upper,
                    from,
                    limit - found.len(),
                )
                .await?,
            );
            return Ok(found);
        }
    }
}

/// The conversation filters of a list but its text, on conversation `c`:
/// organization `$1`, chatbot `$2`, channel `$3`, from `$4`, before the
/// position (`$5`, `$6`).
const CONVERSATION_FILTERS: &str = "c.org_id = $1
     AND ($2 IS NULL OR c.chatbot_id = $2)
     AND ($3 IS NULL OR c.channel = $3)
     AND c.created_at >= $4
     AND (c.created_at, c.id) < ($5, $6)";

impl<'a> Statement<'a> {
    /// Binds `$1` to `$6` of [`CONVERSATION_FILTERS`].
    fn bind_filters(
        self,
        scope: &TenantScope,
        query: &'a ConversationQuery,
        from: DateTime<Utc>,
        upper: Position,
    ) -> Self {
        self.bind(scope.org_id())
            .bind(query.chatbot_id)
            .bind(query.channel.as_deref())
            .bind(from)
            .bind(upper.0)
            .bind(upper.1)
    }
}

/// Whether `text` holds `words` in that order, the last one a word's
/// beginning: what the word index matches.
fn holds_words(text: &str, words: &[String]) -> bool {
    let Some((last, first)) = words.split_last() else {
        return true;
    };
    let tokens = words_of(text);
    tokens.windows(words.len()).any(|window| {
        window[..first.len()] == *first && window[first.len()].starts_with(last.as_str())
    })
}

/// `text` as a case-insensitive LIKE pattern that matches it anywhere.
pub(crate) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A message to store in one call of the backend's (see
/// [`SqlBackend::add_message_in_one_call`]), with what the shared statements
/// would work out on the way: both store the same rows.
pub struct MessageWrite<'a> {
    pub org: OrgId,
    pub at: DateTime<Utc>,
    pub new: &'a NewMessage,
    /// The author's name, when not blank, for a person who has none.
    pub sender_name: Option<&'a str>,
    /// The id of the author's person if they have none yet.
    pub new_person: PersonId,
    /// The day and week of `at` as the activity counters number them.
    pub day: i64,
    pub week: i64,
    /// The month of `at` usage is counted in.
    pub period: String,
    /// The row of each shared counter this message adds to (on PostgreSQL,
    /// the first message's of its batch).
    pub shard: i64,
    /// The claim of the keyed request whose effect the message is.
    pub fence: Option<Fence>,
}

/// The message `new` stored at `at`, written by `person`.
fn stored_message(
    org: OrgId,
    at: DateTime<Utc>,
    new: NewMessage,
    person: Option<PersonId>,
) -> Message {
    let conversation_id = match new.conversation {
        ConversationChoice::Existing(id) | ConversationChoice::Start(id) => id,
    };
    Message {
        id: new.id,
        org_id: org,
        chatbot_id: new.chatbot_id,
        conversation_id,
        role: new.role,
        text: new.text.into_inner(),
        channel: new.channel,
        external_id: new.external_id,
        answers: new.answers,
        channel_id: new.channel_id,
        meta: new.meta,
        forwarded: new.forwarded && new.role == MessageRole::User,
        person_id: person,
        created_at: at,
    }
}

/// What subscribers are told of a message stored in `conversation`.
pub fn live_message(org: OrgId, conversation: ConversationId, message: MessageId) -> LiveEvent {
    LiveEvent {
        org_id: org,
        conversation_id: conversation,
        kind: LiveKind::Message {
            message_id: message,
        },
    }
}

#[async_trait]
impl<B: SqlBackend> MessageStore for B {
    async fn add_message(&self, scope: &TenantScope, mut new: NewMessage) -> StoreResult<Message> {
        let org = scope.org_id();
        let at = now();
        let day = day_number(at.date_naive());
        let write = MessageWrite {
            org,
            at,
            new: &new,
            sender_name: new
                .sender
                .as_ref()
                .and_then(|s| s.name.as_deref())
                .filter(|n| !n.trim().is_empty()),
            new_person: PersonId::new(),
            day,
            week: week_of(day),
            period: usage_period(at),
            shard: counter_shard::<B>(),
            fence: keyed_request_fence(&()),
        };
        if let Some(stored) = self.add_message_in_one_call(&write).await {
            let message = stored_message(org, at, new, stored?);
            self.live_committed(live_message(org, message.conversation_id, message.id));
            return Ok(message);
        }
        let mut tx = self.begin().await?;
        // The chatbot's status, whether a conversation named is its own, and
        // whether the channel still has the secrets the message was checked
        // with: one statement, as each is a round trip on PostgreSQL.
        let existing = match new.conversation {
            ConversationChoice::Existing(id) => Some(id),
            ConversationChoice::Start(_) => None,
        };
        let chatbot = tx
            .fetch_one(
                sql("SELECT status,
                        EXISTS (SELECT 1 FROM conversations c
                                WHERE c.id = $3 AND c.org_id = $2 AND c.chatbot_id = $1) AS known,
                        $5 IS NULL OR EXISTS (SELECT 1 FROM channels ch
                                WHERE ch.id = $4 AND ch.org_id = $2 AND ch.secrets = $5) AS channel_as_checked
                     FROM chatbots WHERE id = $1 AND org_id = $2")
                .bind(new.chatbot_id)
                .bind(org)
                .bind(existing)
                .bind(new.channel_id)
                .bind(new.channel_secrets.as_deref()),
            )
            .await?;
        if !chatbot.get::<bool>("channel_as_checked")? {
            return Err(StoreError::Conflict(Conflict::ChannelChanged));
        }
        let status: ChatbotStatus = chatbot.get("status")?;
        if new.role == MessageRole::User && status == ChatbotStatus::Paused {
            return Err(StoreError::Conflict(Conflict::ChatbotPaused));
        }
        if existing.is_some() && !chatbot.get::<bool>("known")? {
            return Err(StoreError::NotFound);
        }
        let conversation_id = match new.conversation {
            ConversationChoice::Existing(id) => id,
            ConversationChoice::Start(id) => {
                // With the sender's key on the channel, the conversation is
                // theirs there (unique `conversations_external`).
                let key = new.conversation_key.as_deref();
                tx.execute(
                    sql(
                        "INSERT INTO conversations (id, org_id, chatbot_id, channel, created_at,
                                                    channel_id, external_key)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(id)
                    .bind(org)
                    .bind(new.chatbot_id)
                    .bind(new.channel.as_str())
                    .bind(at)
                    .bind(key.and(new.channel_id))
                    .bind(key),
                )
                .await
                .map_err(|e| match e {
                    StoreError::Conflict(_) if key.is_some() => {
                        StoreError::Conflict(Conflict::ConversationStarted)
                    }
                    other => other,
                })?;
                id
            }
        };
        let person = match (&new.sender, new.role) {
            (Some(sender), MessageRole::User) => {
                Some(crate::sql::people::person_of(&mut tx, org, sender, Some(at)).await?)
            }
            _ => None,
        };
        let started = matches!(new.conversation, ConversationChoice::Start(_));
        let (then, tokens) = (std::mem::take(&mut new.then), new.tokens);
        let message = stored_message(org, at, new, person);
        tx.execute(
            sql("INSERT INTO messages (id, org_id, chatbot_id, conversation_id, role, text, channel,
                                       external_id, answers, channel_id, meta, created_at, person_id,
                                       forwarded)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)")
            .bind(message.id)
            .bind(org)
            .bind(message.chatbot_id)
            .bind(conversation_id)
            .bind(message.role)
            .bind(message.text.as_str())
            .bind(message.channel.as_str())
            .bind(message.external_id.as_deref())
            .bind(message.answers)
            .bind(message.channel_id)
            .bind(message.meta.as_ref())
            .bind(at)
            .bind(person)
            .bind(message.forwarded),
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => StoreError::Conflict(Conflict::DuplicateMessage),
            other => other,
        })?;
        // The person's days and weeks first; the counters many messages
        // share (one row per chatbot, channel or month) last, just before
        // the commit, so that concurrent messages wait on them briefly.
        let mut firsts = Vec::new();
        if message.role == MessageRole::User {
            tx.execute(
                sql("UPDATE conversations
                     SET last_active_at = $1, person_id = COALESCE(person_id, $3)
                     WHERE id = $2")
                .bind(at)
                .bind(conversation_id)
                .bind(person),
            )
            .await?;
            if let Some(person) = person {
                firsts = mark_active(&mut tx, org, at, person).await?;
            }
        }
        for job in &then {
            insert_job::<B>(&mut tx, job).await?;
        }
        let stored = live_message(org, message.conversation_id, message.id);
        B::announce_live(&mut tx, &stored);
        let counted = i64::from(message.role == MessageRole::User);
        count_activity::<B>(
            &mut tx,
            org,
            message.chatbot_id,
            at,
            DayCounts {
                received: counted,
                replied: i64::from(message.role == MessageRole::Assistant),
                started: i64::from(started),
                ..DayCounts::default()
            },
        )
        .await?;
        if message.role == MessageRole::User {
            count_channel_message::<B>(&mut tx, org, &message).await?;
        }
        for (span, number) in firsts {
            count_people::<B>(&mut tx, org, span, number, 1).await?;
        }
        if counted > 0 || tokens > 0 {
            count_usage::<B>(&mut tx, org, at, counted, tokens).await?;
        }
        commit::<B>(tx).await?;
        self.live_committed(stored);
        Ok(message)
    }

    async fn conversation_messages(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let found = self
            .read()
            .await?
            .fetch_all(
                sql(concat!(
                    "SELECT * FROM (",
                    select_message!(),
                    " FROM messages WHERE org_id = $1 AND conversation_id = $2
                         ORDER BY created_at DESC, id DESC LIMIT $3) AS latest
                     ORDER BY created_at, id"
                ))
                .bind(scope.org_id())
                .bind(conversation)
                .bind(i64::from(limit)),
            )
            .await?;
        found.iter().map(rows::message).collect()
    }

    async fn conversation_messages_after(
        &self,
        scope: &TenantScope,
        conversation: ConversationId,
        after: Option<MessageId>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let mut db = self.read().await?;
        let found = match after {
            None => {
                db.fetch_all(
                    sql(concat!(
                        select_message!(),
                        " FROM messages WHERE org_id = $1 AND conversation_id = $2
                         ORDER BY created_at, id LIMIT $3"
                    ))
                    .bind(scope.org_id())
                    .bind(conversation)
                    .bind(i64::from(limit)),
                )
                .await?
            }
            Some(after) => {
                let at: chrono::DateTime<chrono::Utc> = db
                    .fetch_one(
                        sql("SELECT created_at FROM messages
                             WHERE id = $1 AND org_id = $2 AND conversation_id = $3")
                        .bind(after)
                        .bind(scope.org_id())
                        .bind(conversation),
                    )
                    .await?
                    .get("created_at")?;
                db.fetch_all(
                    sql(concat!(
                        select_message!(),
                        " FROM messages
                         WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) > ($3, $4)
                         ORDER BY created_at, id LIMIT $5"
                    ))
                    .bind(scope.org_id())
                    .bind(conversation)
                    .bind(at)
                    .bind(after)
                    .bind(i64::from(limit)),
                )
                .await?
            }
        };
        found.iter().map(rows::message).collect()
    }

    async fn history(
        &self,
        scope: &TenantScope,
        query: &HistoryQuery,
    ) -> StoreResult<Vec<Message>> {
        let (upper, from) = query.bounds();
        let found = self
            .read()
            .await?
            .fetch_all(
                sql(HISTORY_PAGE)
                    .bind(scope.org_id())
                    .bind(query.chatbot_id)
                    .bind(upper.created_at)
                    .bind(upper.id)
                    .bind(from)
                    .bind(i64::from(query.limit)),
            )
            .await?;
        found.iter().map(rows::message).collect()
    }

    async fn message_thread(
        &self,
        scope: &TenantScope,
        chatbot: ChatbotId,
        message: MessageId,
        around: u32,
    ) -> StoreResult<(Message, Vec<Message>)> {
        let mut db = self.read().await?;
        let row = db
            .fetch_one(
                sql(concat!(
                    select_message!(),
                    " FROM messages WHERE id = $1 AND org_id = $2 AND chatbot_id = $3"
                ))
                .bind(message)
                .bind(scope.org_id())
                .bind(chatbot),
            )
            .await?;
        let message = rows::message(&row)?;
        let neighbours = |text: &'static str| {
            sql(text)
                .bind(scope.org_id())
                .bind(message.conversation_id)
                .bind(message.created_at)
                .bind(message.id)
                .bind(i64::from(around))
        };
        let before = db
            .fetch_all(neighbours(concat!(
                select_message!(),
                " FROM messages
                 WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) < ($3, $4)
                 ORDER BY created_at DESC, id DESC LIMIT $5"
            )))
            .await?;
        let after = db
            .fetch_all(neighbours(concat!(
                select_message!(),
                " FROM messages
                 WHERE org_id = $1 AND conversation_id = $2 AND (created_at, id) > ($3, $4)
                 ORDER BY created_at, id LIMIT $5"
            )))
            .await?;
        let mut thread = before
            .iter()
            .rev()
            .map(rows::message)
            .collect::<StoreResult<Vec<_>>>()?;
        thread.push(message.clone());
        for row in &after {
            thread.push(rows::message(row)?);
        }
        Ok((message, thread))
    }

    async fn list_conversations(
        &self,
        scope: &TenantScope,
        query: &ConversationQuery,
    ) -> StoreResult<Vec<ConversationSummary>> {
        let mut db = self.read().await?;
        let mut upper = (end_of_time(), uuid::Uuid::max());
        if let Some(to) = query.to {
            upper = upper.min((to, uuid::Uuid::nil()));
        }
        if let Some(before) = query.before {
            let at: DateTime<Utc> = db
                .fetch_one(
                    sql("SELECT created_at FROM conversations WHERE id = $1 AND org_id = $2")
                        .bind(before)
                        .bind(scope.org_id()),
                )
                .await?
                .get("created_at")?;
            upper = upper.min((at, before.as_uuid()));
        }
        let limit = query.limit as usize;
        let from = query.from.unwrap_or_else(start_of_time);
        let filter = match query.text.as_deref() {
            Some(text) => Some(text_filter::<B>(&mut db, scope.org_id(), text).await?),
            None => None,
        };
        let (condition, value) = match &filter {
            None => ("TRUE", None),
            Some(TextFilter::Indexed(words)) => (B::WORDS.indexed, Some(words.as_str())),
            Some(TextFilter::Literal(pattern)) => (LIKE_CONDITION, Some(pattern.as_str())),
            Some(TextFilter::Common {
                pattern,
                words,
                query: index_query,
            }) => {
                let bounds = (upper, from, limit);
                let common = (pattern.as_str(), words.as_slice(), index_query.as_str());
                return common_words_page::<B>(&mut db, scope, query, common, bounds).await;
            }
        };
        conversation_page::<B>(&mut db, scope, query, condition, value, upper, from, limit).await
    }

    async fn conversation(
        &self,
        scope: &TenantScope,
        id: ConversationId,
    ) -> StoreResult<ConversationSummary> {
        let row = self
            .read()
            .await?
            .fetch_one(
                sql(format!("{CONVERSATIONS} WHERE c.id = $1 AND c.org_id = $2"))
                    .bind(id)
                    .bind(scope.org_id()),
            )
            .await?;
        rows::conversation_summary(&row)
    }

    async fn activity(
        &self,
        scope: &TenantScope,
        first_day: chrono::NaiveDate,
        now: DateTime<Utc>,
    ) -> StoreResult<Activity> {
        let org = scope.org_id();
        let mut db = self.read().await?;
        let first = day_number(first_day);
        let mut days = std::collections::BTreeMap::<i64, DayActivity>::new();
        // CAST: PostgreSQL sums bigints as numeric.
        for row in db
            .fetch_all(
                sql("SELECT day, CAST(SUM(received) AS BIGINT) AS received,
                            CAST(SUM(replied) AS BIGINT) AS replied,
                            CAST(SUM(with_skills) AS BIGINT) AS with_skills,
                            CAST(SUM(rated_up) AS BIGINT) AS rated_up,
                            CAST(SUM(rated_down) AS BIGINT) AS rated_down
                     FROM activity_days WHERE org_id = $1 AND day >= $2
                     GROUP BY day")
                .bind(org)
                .bind(first),
            )
            .await?
        {
            let day = days.entry(row.get("day")?).or_default();
            day.received = row.get("received")?;
            day.replied = row.get("replied")?;
            day.with_skills = row.get("with_skills")?;
            day.rated_up = row.get("rated_up")?;
            day.rated_down = row.get("rated_down")?;
        }
        for row in db
            .fetch_all(
                sql(
                    "SELECT day, skill, activations, rated_up, rated_down FROM skill_days
                     WHERE org_id = $1 AND day >= $2 ORDER BY day, skill",
                )
                .bind(org)
                .bind(first),
            )
            .await?
        {
            let day = days.entry(row.get("day")?).or_default();
            day.skills.push(crate::sql::skills::skill_use(&row)?);
        }
        for row in db
            .fetch_all(
                sql(
                    "SELECT day, CAST(SUM(forwarded) AS BIGINT) AS forwarded FROM channel_days
                     WHERE org_id = $1 AND day >= $2 GROUP BY day",
                )
                .bind(org)
                .bind(first),
            )
            .await?
        {
            days.entry(row.get("day")?).or_default().forwarded = row.get("forwarded")?;
        }
        for row in db
            .fetch_all(
                sql(
                    "SELECT number, CAST(SUM(people) AS BIGINT) AS people FROM people_counts
                     WHERE org_id = $1 AND span = 'day' AND number >= $2
                     GROUP BY number HAVING SUM(people) > 0",
                )
                .bind(org)
                .bind(first),
            )
            .await?
        {
            days.entry(row.get("number")?).or_default().people = row.get("people")?;
        }
        let days = days
            .into_iter()
            .map(|(number, day)| {
                Ok(DayActivity {
                    day: day_of_number(number)?,
                    ..day
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let weeks = db
            .fetch_all(
                sql(
                    "SELECT number, CAST(SUM(people) AS BIGINT) AS people FROM people_counts
                     WHERE org_id = $1 AND span = 'week' AND number >= $2
                     GROUP BY number HAVING SUM(people) > 0 ORDER BY number",
                )
                .bind(org)
                .bind(week_of(first)),
            )
            .await?
            .iter()
            .map(|row| {
                Ok((
                    day_of_number(row.get::<i64>("number")? * 7 - 3)?,
                    row.get("people")?,
                ))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let today = day_number(now.date_naive());
        let mut people = Vec::new();
        for from in [today, today - 6] {
            let row = db
                .fetch_one(
                    sql("SELECT COUNT(DISTINCT person_id) AS people FROM person_days
                         WHERE org_id = $1 AND day >= $2 AND day <= $3")
                    .bind(org)
                    .bind(from)
                    .bind(today),
                )
                .await?;
            people.push(row.get::<i64>("people")?);
        }
        let since = first_day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
        let reply_seconds = db
            .fetch_all(
                sql("SELECT r.created_at AS replied_at, u.created_at AS asked_at
                     FROM messages r JOIN messages u ON u.id = r.answers
                     WHERE r.org_id = $1 AND r.role = 'assistant' AND r.created_at >= $2
                     ORDER BY r.created_at DESC LIMIT 2000")
                .bind(org)
                .bind(since),
            )
            .await?
            .iter()
            .map(|row| {
                let replied: DateTime<Utc> = row.get("replied_at")?;
                let asked: DateTime<Utc> = row.get("asked_at")?;
                Ok((replied - asked).num_milliseconds() as f64 / 1000.0)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let chatbots = db
            .fetch_all(
                sql("SELECT b.id,
                       CAST(COALESCE((SELECT SUM(a.received) FROM activity_days a
                          WHERE a.org_id = b.org_id AND a.day >= $2 AND a.chatbot_id = b.id), 0) AS BIGINT)
                         AS received,
                       CAST(COALESCE((SELECT SUM(a.started) FROM activity_days a
                          WHERE a.org_id = b.org_id AND a.day >= $2 AND a.chatbot_id = b.id), 0) AS BIGINT)
                         AS started,
                       CAST(COALESCE((SELECT SUM(a.rated_up) FROM activity_days a
                          WHERE a.org_id = b.org_id AND a.day >= $2 AND a.chatbot_id = b.id), 0) AS BIGINT)
                         AS rated_up,
                       CAST(COALESCE((SELECT SUM(a.rated_down) FROM activity_days a
                          WHERE a.org_id = b.org_id AND a.day >= $2 AND a.chatbot_id = b.id), 0) AS BIGINT)
                         AS rated_down
                     FROM chatbots b WHERE b.org_id = $1 ORDER BY b.created_at, b.id")
                .bind(org)
                .bind(first),
            )
            .await?
            .iter()
            .map(|row| {
                Ok(ChatbotActivity {
                    chatbot_id: row.get("id")?,
                    received: row.get("received")?,
                    started: row.get("started")?,
                    rated_up: row.get("rated_up")?,
                    rated_down: row.get("rated_down")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Activity {
            days,
            weeks,
            people_today: people[0],
            people_week: people[1],
            reply_seconds,
            chatbots,
        })
    }
}

/// A day as `activity_days` numbers it: days since 1970-01-01.
pub(crate) fn day_number(day: chrono::NaiveDate) -> i64 {
    i64::from(day.num_days_from_ce()) - UNIX_EPOCH_DAY
}

fn day_of_number(number: i64) -> StoreResult<chrono::NaiveDate> {
    i32::try_from(number + UNIX_EPOCH_DAY)
        .ok()
        .and_then(chrono::NaiveDate::from_num_days_from_ce_opt)
        .ok_or_else(|| StoreError::Internal(format!("day {number}")))
}

/// 1970-01-01 counted from the common era, as chrono counts.
const UNIX_EPOCH_DAY: i64 = 719_163;

/// Marks a person active on the day and in the week of `at`: the spans
/// (`day`, `week`) in which this is their first message, whose people
/// counters the caller moves.
async fn mark_active(
    tx: &mut impl Db,
    org: OrgId,
    at: DateTime<Utc>,
    person: PersonId,
) -> StoreResult<Vec<(&'static str, i64)>> {
    let day = day_number(at.date_naive());
    let mut firsts = Vec::new();
    for (table, span, number) in [
        ("person_days", "day", day),
        ("person_weeks", "week", week_of(day)),
    ] {
        // Marked today already, they are marked in this week too.
        if span == "week" && firsts.is_empty() {
            break;
        }
        let first = tx
            .execute(
                sql(format!(
                    "INSERT INTO {table} (org_id, {span}, person_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING"
                ))
                .bind(org)
                .bind(number)
                .bind(person),
            )
            .await?;
        if first > 0 {
            firsts.push((span, number));
        }
    }
    Ok(firsts)
}

/// Counts a person's message in its day and channel, direct or forwarded.
async fn count_channel_message<B: SqlBackend>(
    tx: &mut impl Db,
    org: OrgId,
    message: &Message,
) -> StoreResult<()> {
    let forwarded = i64::from(message.forwarded);
    tx.execute(
        sql(
            "INSERT INTO channel_days (org_id, day, channel, direct, forwarded, shard)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (org_id, day, channel, shard) DO UPDATE SET
                direct = channel_days.direct + excluded.direct,
                forwarded = channel_days.forwarded + excluded.forwarded",
        )
        .bind(org)
        .bind(day_number(message.created_at.date_naive()))
        .bind(message.channel.as_str())
        .bind(1 - forwarded)
        .bind(forwarded)
        .bind(counter_shard::<B>()),
    )
    .await?;
    Ok(())
}

/// The week (Monday to Sunday) of a day as `activity_days` numbers days:
/// day 0, 1970-01-01, was a Thursday, so week n starts on day 7n - 3.
pub(crate) fn week_of(day: i64) -> i64 {
    (day + 3).div_euclid(7)
}

/// One of `B::COUNTER_SHARDS` rows of a shared counter, at random: concurrent
/// writers add to different rows, and readers sum them.
fn counter_shard<B: SqlBackend>() -> i64 {
    use std::hash::BuildHasher;
    // Every RandomState has keys of its own (a per-thread seed, counted up
    // for each), so hashing anything with a new one is a cheap random number.
    (std::hash::RandomState::new().hash_one(()) % B::COUNTER_SHARDS) as i64
}

/// Adds to the organization's usage of the month of `at` (what plans limit).
pub(crate) async fn count_usage<B: SqlBackend>(
    db: &mut impl Db,
    org: OrgId,
    at: DateTime<Utc>,
    messages: i64,
    tokens: i64,
) -> StoreResult<()> {
    db.execute(
        sql(
            "INSERT INTO usage_counters (org_id, period, messages, tokens, shard)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (org_id, period, shard) DO UPDATE SET
                messages = usage_counters.messages + excluded.messages,
                tokens = usage_counters.tokens + excluded.tokens",
        )
        .bind(org)
        .bind(usage_period(at))
        .bind(messages)
        .bind(tokens)
        .bind(counter_shard::<B>()),
    )
    .await?;
    Ok(())
}

/// Adds `by` to the people counted in a day or a week (`span`).
pub(crate) async fn count_people<B: SqlBackend>(
    tx: &mut impl Db,
    org: OrgId,
    span: &str,
    number: i64,
    by: i64,
) -> StoreResult<()> {
    tx.execute(
        sql(
            "INSERT INTO people_counts (org_id, span, number, people, shard)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (org_id, span, number, shard) DO UPDATE SET
                people = people_counts.people + excluded.people",
        )
        .bind(org)
        .bind(span)
        .bind(number)
        .bind(by)
        .bind(counter_shard::<B>()),
    )
    .await?;
    Ok(())
}

/// What one stored message adds to its day's counters.
#[derive(Default)]
pub(crate) struct DayCounts {
    pub received: i64,
    pub replied: i64,
    pub started: i64,
    pub rated_up: i64,
    pub rated_down: i64,
    /// Replies that loaded a skill (on the day of their first load).
    pub with_skills: i64,
}

/// Adds to the counters of `chatbot`'s day of `at`, in the transaction that
/// stores what is counted.
pub(crate) async fn count_activity<B: SqlBackend>(
    tx: &mut B::Tx,
    org: OrgId,
    chatbot: ChatbotId,
    at: DateTime<Utc>,
    counts: DayCounts,
) -> StoreResult<()> {
    tx.execute(
        sql(
            "INSERT INTO activity_days (org_id, chatbot_id, day, received, replied, started,
                                        rated_up, rated_down, with_skills, shard)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (org_id, day, chatbot_id, shard) DO UPDATE SET
                received = activity_days.received + excluded.received,
                replied = activity_days.replied + excluded.replied,
                started = activity_days.started + excluded.started,
                rated_up = activity_days.rated_up + excluded.rated_up,
                rated_down = activity_days.rated_down + excluded.rated_down,
                with_skills = activity_days.with_skills + excluded.with_skills",
        )
        .bind(org)
        .bind(chatbot)
        .bind(day_number(at.date_naive()))
        .bind(counts.received)
        .bind(counts.replied)
        .bind(counts.started)
        .bind(counts.rated_up)
        .bind(counts.rated_down)
        .bind(counts.with_skills)
        .bind(counter_shard::<B>()),
    )
    .await?;
    Ok(())
}

/// Adds to the counters of skill `skill`'s day of `at`.
pub(crate) async fn count_skill(
    tx: &mut impl Db,
    org: OrgId,
    skill: &str,
    at: DateTime<Utc>,
    activations: i64,
    (rated_up, rated_down): (i64, i64),
) -> StoreResult<()> {
    tx.execute(
        sql(
            "INSERT INTO skill_days (org_id, day, skill, activations, rated_up, rated_down)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (org_id, day, skill) DO UPDATE SET
                activations = skill_days.activations + excluded.activations,
                rated_up = skill_days.rated_up + excluded.rated_up,
                rated_down = skill_days.rated_down + excluded.rated_down",
        )
        .bind(org)
        .bind(day_number(at.date_naive()))
        .bind(skill)
        .bind(activations)
        .bind(rated_up)
        .bind(rated_down),
    )
    .await?;
    Ok(())
}
