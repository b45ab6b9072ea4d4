//! [`PeopleStore`], for every backend, and finding a message's author in
//! the message's own transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use steward_domain::*;

use crate::sql::messages::{CONVERSATIONS, contains_pattern};
use crate::sql::{Db, Row, SqlBackend, audit, commit, rows, sql};
use crate::*;

/// A person found by a handle has their last sighting (when there is one)
/// and a name (if they had none) written by the same statement: one round
/// trip per message.
const FOUND: &str = "UPDATE people
     SET last_seen_at = COALESCE($4, people.last_seen_at), name = COALESCE(people.name, $5)
     FROM person_identities i
     WHERE i.org_id = $1 AND i.kind = $2 AND i.handle = $3 AND people.id = i.person_id
     RETURNING id";

/// The person `sender` is in the organization, made with that one handle
/// when nobody has it yet. In the caller's transaction, so that a message
/// and its author are stored together. `seen`: when they wrote (None when
/// they are being added, not writing).
pub(crate) async fn person_of(
    tx: &mut impl Db,
    org: OrgId,
    sender: &Sender,
    seen: Option<DateTime<Utc>>,
) -> StoreResult<PersonId> {
    let identity = &sender.identity;
    let name = sender.name.as_deref().filter(|n| !n.trim().is_empty());
    // A concurrent merge may delete the person between the lookup and the
    // insert; the next round finds the handle where the merge moved it.
    for _ in 0..3 {
        let found = sql(FOUND)
            .bind(org)
            .bind(identity.kind)
            .bind(identity.handle.as_str())
            .bind(seen)
            .bind(name);
        if let Some(row) = tx.fetch_optional(found).await? {
            return row.get("id");
        }
        let person = PersonId::new();
        tx.execute(
            sql(
                "INSERT INTO people (id, org_id, name, created_at, last_seen_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(person)
            .bind(org)
            .bind(name)
            .bind(now())
            .bind(seen),
        )
        .await?;
        if add_identity(tx, org, person, identity).await? {
            return Ok(person);
        }
        // Another transaction gave the handle a person first.
        tx.execute(sql("DELETE FROM people WHERE id = $1").bind(person))
            .await?;
    }
    Err(StoreError::Unavailable(
        "a person's handle kept moving; try again".into(),
    ))
}

/// Makes a new member's person, known by their account and email address,
/// or finds the one their address already names (someone who wrote by
/// email before they were a member).
pub(crate) async fn add_member_person(tx: &mut impl Db, user: &User) -> StoreResult<PersonId> {
    let email =
        Email::parse("email", &user.email).map_err(|e| StoreError::Internal(e.to_string()))?;
    let sender = Sender {
        identity: Identity::email(&email),
        name: user.name.clone(),
    };
    let person = person_of(tx, user.org_id, &sender, None).await?;
    // A new account's id is a handle nobody has.
    if !add_identity(tx, user.org_id, person, &Identity::member(user.id)).await? {
        return Err(StoreError::Internal(format!(
            "member {} is a person already",
            user.id
        )));
    }
    Ok(person)
}

/// Adds a handle to a person; false when someone has it already.
async fn add_identity(
    tx: &mut impl Db,
    org: OrgId,
    person: PersonId,
    identity: &Identity,
) -> StoreResult<bool> {
    let added = tx
        .execute(
            sql(
                "INSERT INTO person_identities (org_id, kind, handle, person_id, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT DO NOTHING",
            )
            .bind(org)
            .bind(identity.kind)
            .bind(identity.handle.as_str())
            .bind(person)
            .bind(now()),
        )
        .await?;
    Ok(added > 0)
}

/// Gives `person` each handle, merging in whoever has one already.
async fn link<B: SqlBackend>(
    tx: &mut B::Tx,
    scope: &TenantScope,
    person: PersonId,
    identities: &[Identity],
) -> StoreResult<()> {
    let org = scope.org_id();
    for identity in identities {
        let holder: Option<PersonId> = tx
            .fetch_optional(
                sql("SELECT person_id FROM person_identities
                     WHERE org_id = $1 AND kind = $2 AND handle = $3")
                .bind(org)
                .bind(identity.kind)
                .bind(identity.handle.as_str()),
            )
            .await?
            .map(|row| row.get("person_id"))
            .transpose()?;
        match holder {
            Some(holder) if holder == person => {}
            Some(holder) => merge::<B>(tx, scope, person, holder).await?,
            None => {
                add_identity(tx, org, person, identity).await?;
            }
        }
    }
    Ok(())
}

/// Moves everything of `from` to `into` and deletes `from`.
async fn merge<B: SqlBackend>(
    tx: &mut B::Tx,
    scope: &TenantScope,
    into: PersonId,
    from: PersonId,
) -> StoreResult<()> {
    if into == from {
        return Err(StoreError::Conflict(Conflict::SamePerson));
    }
    let org = scope.org_id();
    // Both rows are locked (in id order, so two merges cannot deadlock):
    // a message arriving for `from` meanwhile waits, then finds its handle
    // under `into`.
    let (first, second) = if into < from {
        (into, from)
    } else {
        (from, into)
    };
    let mut found = Vec::new();
    for id in [first, second] {
        let row = tx
            .fetch_one(
                sql(format!(
                    "SELECT id, name, created_at, last_seen_at,
                            EXISTS (SELECT 1 FROM person_identities i
                                    WHERE i.person_id = people.id AND i.kind = 'member') AS member
                     FROM people WHERE id = $1 AND org_id = $2{}",
                    B::FOR_UPDATE
                ))
                .bind(id)
                .bind(org),
            )
            .await?;
        found.push((
            row.get::<PersonId>("id")?,
            row.get::<Option<String>>("name")?,
            row.get::<DateTime<Utc>>("created_at")?,
            row.get::<Option<DateTime<Utc>>>("last_seen_at")?,
            row.get::<bool>("member")?,
        ));
    }
    if found.iter().all(|p| p.4) {
        return Err(StoreError::Conflict(Conflict::BothMembers));
    }
    let (target, source) = if found[0].0 == into {
        (&found[0], &found[1])
    } else {
        (&found[1], &found[0])
    };
    // A reply both rated keeps the rating of the person merged into.
    let dropped = tx
        .fetch_all(
            sql(
                "DELETE FROM feedback WHERE person_id = $1 AND message_id IN (
                    SELECT message_id FROM feedback WHERE person_id = $2)
                 RETURNING message_id, chatbot_id, rating, created_at",
            )
            .bind(from)
            .bind(into),
        )
        .await?;
    crate::sql::feedback::count_out::<B>(tx, org, dropped).await?;
    // Days and weeks both wrote in count one person, no longer two.
    for (table, span) in [("person_days", "day"), ("person_weeks", "week")] {
        let shared = tx
            .fetch_all(
                sql(format!(
                    "DELETE FROM {table} WHERE person_id = $1 AND {span} IN (
                        SELECT {span} FROM {table} WHERE person_id = $2)
                     RETURNING {span} AS number"
                ))
                .bind(from)
                .bind(into),
            )
            .await?;
        for row in shared {
            crate::sql::messages::count_people::<B>(tx, org, span, row.get("number")?, -1).await?;
        }
    }
    crate::sql::patterns::merge_people(tx, org, from, into).await?;
    // A skill assigned to both stays assigned to one.
    tx.execute(
        sql(
            "DELETE FROM skill_assignees WHERE person_id = $1 AND skill IN (
                SELECT skill FROM skill_assignees WHERE person_id = $2)",
        )
        .bind(from)
        .bind(into),
    )
    .await?;
    let moved = [
        "skill_assignees",
        "person_identities",
        "conversations",
        "messages",
        "feedback",
        "person_days",
        "person_weeks",
        "skill_activations",
        "person_keys",
        "memory_facts",
    ];
    for table in moved {
        tx.execute(
            sql(format!(
                "UPDATE {table} SET person_id = $1 WHERE person_id = $2 AND org_id = $3"
            ))
            .bind(into)
            .bind(from)
            .bind(org),
        )
        .await?;
    }
    tx.execute(
        sql("UPDATE people SET name = $2, created_at = $3, last_seen_at = $4 WHERE id = $1")
            .bind(into)
            .bind(target.1.clone().or_else(|| source.1.clone()))
            .bind(target.2.min(source.2))
            .bind(target.3.max(source.3)),
    )
    .await?;
    tx.execute(sql("DELETE FROM people WHERE id = $1").bind(from))
        .await?;
    audit(
        tx,
        scope,
        "person.merged",
        &format!("person:{into}"),
        json!({ "merged": from }),
    )
    .await
}

/// People with their handles, in the order given.
async fn with_identities(
    db: &mut impl Db,
    org: OrgId,
    found: Vec<impl Row>,
) -> StoreResult<Vec<Person>> {
    let mut people = found
        .iter()
        .map(|row| {
            Ok(Person {
                id: row.get("id")?,
                org_id: org,
                name: row.get("name")?,
                created_at: row.get("created_at")?,
                last_seen_at: row.get("last_seen_at")?,
                identities: Vec::new(),
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    if people.is_empty() {
        return Ok(people);
    }
    let placeholders = (2..people.len() + 2)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut statement = sql(format!(
        "SELECT person_id, kind, handle, created_at FROM person_identities
         WHERE org_id = $1 AND person_id IN ({placeholders})
         ORDER BY created_at, kind, handle"
    ))
    .bind(org);
    for person in &people {
        statement = statement.bind(person.id);
    }
    for row in db.fetch_all(statement).await? {
        let owner: PersonId = row.get("person_id")?;
        if let Some(person) = people.iter_mut().find(|p| p.id == owner) {
            person.identities.push(rows::person_identity(&row)?);
        }
    }
    Ok(people)
}

const PERSON: &str = "SELECT id, name, created_at, last_seen_at FROM people";

async fn read_person(db: &mut impl Db, scope: &TenantScope, id: PersonId) -> StoreResult<Person> {
    let row = db
        .fetch_one(
            sql(format!("{PERSON} WHERE id = $1 AND org_id = $2"))
                .bind(id)
                .bind(scope.org_id()),
        )
        .await?;
    let mut found = with_identities(db, scope.org_id(), vec![row]).await?;
    Ok(found.remove(0))
}

#[async_trait]
impl<B: SqlBackend> PeopleStore for B {
    async fn people(&self, scope: &TenantScope, query: &PeopleQuery) -> StoreResult<Vec<Person>> {
        let mut db = self.read().await?;
        let before = query
            .before
            .map_or(uuid::Uuid::max(), |before| before.as_uuid());
        let pattern = query.text.as_deref().map(contains_pattern);
        let found = db
            .fetch_all(
                sql(format!(
                    "{PERSON} p
                     WHERE p.org_id = $1 AND p.id < $2
                       AND ($3 IS NULL OR LOWER(p.name) LIKE $3 ESCAPE '\\'
                            OR EXISTS (SELECT 1 FROM person_identities i
                                       WHERE i.person_id = p.id AND LOWER(i.handle) LIKE $3 ESCAPE '\\'))
                     ORDER BY p.id DESC
                     LIMIT $4"
                ))
                .bind(scope.org_id())
                .bind(before)
                .bind(pattern.as_deref())
                .bind(i64::from(query.limit)),
            )
            .await?;
        with_identities(&mut db, scope.org_id(), found).await
    }

    async fn person(&self, scope: &TenantScope, id: PersonId) -> StoreResult<Person> {
        read_person(&mut self.read().await?, scope, id).await
    }

    async fn member_person(&self, scope: &TenantScope, user: UserId) -> StoreResult<Person> {
        let mut db = self.read().await?;
        let member = Identity::member(user);
        let id: PersonId = db
            .fetch_one(
                sql("SELECT person_id FROM person_identities
                     WHERE org_id = $1 AND kind = $2 AND handle = $3")
                .bind(scope.org_id())
                .bind(member.kind)
                .bind(member.handle.as_str()),
            )
            .await?
            .get("person_id")?;
        read_person(&mut db, scope, id).await
    }

    async fn person_conversations(
        &self,
        scope: &TenantScope,
        id: PersonId,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>> {
        self.read()
            .await?
            .fetch_all(
                sql(format!(
                    "{CONVERSATIONS}
                     WHERE c.person_id = $1 AND c.org_id = $2
                     ORDER BY c.created_at DESC, c.id DESC
                     LIMIT $3"
                ))
                .bind(id)
                .bind(scope.org_id())
                .bind(i64::from(limit)),
            )
            .await?
            .iter()
            .map(rows::conversation_summary)
            .collect()
    }

    async fn merge_people(
        &self,
        scope: &TenantScope,
        into: PersonId,
        from: PersonId,
    ) -> StoreResult<Person> {
        let mut tx = self.begin().await?;
        merge::<B>(&mut tx, scope, into, from).await?;
        let person = read_person(&mut tx, scope, into).await?;
        commit::<B>(tx).await?;
        Ok(person)
    }

    async fn link_identities(
        &self,
        scope: &TenantScope,
        person: PersonId,
        identities: &[Identity],
    ) -> StoreResult<Person> {
        let mut tx = self.begin().await?;
        // The person is checked first: a handle is never given to another
        // organization's person.
        read_person(&mut tx, scope, person).await?;
        link::<B>(&mut tx, scope, person, identities).await?;
        let person = read_person(&mut tx, scope, person).await?;
        commit::<B>(tx).await?;
        Ok(person)
    }
}
