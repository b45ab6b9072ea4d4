//! The people who talk to an organization's assistants: listed, read with
//! their handles and conversations, and merged by an admin; what the
//! assistants remember of each, read and forgotten, and everything held
//! about them exported, by an admin or the person themself; a person erased
//! by an admin. Advisors see none of it.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::{FactId, IdentityKind, PersonId};
use steward_store::{PeopleQuery, Person};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::conversations::ConversationDto;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path, Query};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    OpenApiRouter::new()
        .routes(routes!(list_people))
        .routes(routes!(get_person, erase_person))
        .routes(routes!(merge_person))
        .routes(routes!(person_memory, forget_memory))
        .routes(routes!(forget_fact))
        .routes(routes!(export_person))
        .routes(routes!(person_export))
        .routes(routes!(download_export))
}

/// How long an export can be downloaded; then it is deleted.
const EXPORT_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// How many of a person's conversations their page shows, newest first.
const PERSON_CONVERSATIONS: u32 = 20;

#[derive(Serialize, ToSchema)]
pub struct IdentityDto {
    /// `member` (an account of the organization; the handle is its user
    /// id), `email`, `whatsapp` (the number, digits only), `slack` (member
    /// id), `teams`, `telegram` (user id), `web` or `generic` (the channel's
    /// id, a colon, and the visitor's or user's id).
    kind: IdentityKind,
    handle: String,
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct PersonDto {
    id: PersonId,
    /// The name a member account or the first channel that gave one gives.
    name: Option<String>,
    created_at: DateTime<Utc>,
    /// When they last wrote to an assistant; null if never.
    last_seen_at: Option<DateTime<Utc>>,
    /// Every handle they are known by, oldest first.
    identities: Vec<IdentityDto>,
}

impl From<Person> for PersonDto {
    fn from(p: Person) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_seen_at: p.last_seen_at,
            identities: p
                .identities
                .into_iter()
                .map(|i| IdentityDto {
                    kind: i.identity.kind,
                    handle: i.identity.handle,
                    created_at: i.created_at,
                })
                .collect(),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeopleParams {
    /// Part of a name or a handle, in any case (`+44 20`, `ana`, `U0123`).
    /// Empty: everyone.
    #[param(max_length = 200)]
    q: Option<String>,
    /// 1 to 200; default 50.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// `next_before` of the previous page.
    before: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct PeopleList {
    /// Newest first (by when each was first known).
    people: Vec<PersonDto>,
    /// Pass as `before` for the next page; null on the last page.
    next_before: Option<PersonId>,
}

/// The organization's people, newest first, searched by name or handle.
#[utoipa::path(get, path = "/people", tag = "people", security(("bearer" = [])),
    params(PeopleParams),
    responses((status = 200, body = PeopleList), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_people(
    State(state): State<SharedState>,
    auth: Auth,
    Query(params): Query<PeopleParams>,
) -> ApiResult<axum::Json<PeopleList>> {
    auth.require_conversations()?;
    let limit = crate::routes::page_limit(params.limit)?;
    let text = params
        .q
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if text.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q must be at most 200 characters",
        ));
    }
    let query = PeopleQuery {
        text,
        before: params.before.map(PersonId::from),
        // One more than asked tells whether another page follows.
        limit: limit + 1,
    };
    let read = state.store.people(&auth.0.scope(), &query).await;
    let (people, next_before) = crate::routes::page_before(read, limit, "a person", |p| p.id)?;
    Ok(axum::Json(PeopleList {
        people: people.into_iter().map(Into::into).collect(),
        next_before,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct PersonPage {
    #[serde(flatten)]
    person: PersonDto,
    /// Their latest conversations (at most 20), newest first.
    conversations: Vec<ConversationDto>,
}

/// One person: their handles, when they were last seen, and their latest
/// conversations.
#[utoipa::path(get, path = "/people/{id}", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = PersonPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_person(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<PersonPage>> {
    auth.require_conversations()?;
    let scope = auth.0.scope();
    let person = state.store.person(&scope, id.into()).await?;
    let conversations = state
        .store
        .person_conversations(&scope, person.id, PERSON_CONVERSATIONS)
        .await?;
    Ok(axum::Json(PersonPage {
        person: person.into(),
        conversations: conversations.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct ErasureQueued {
    /// The `erase` job (`GET /api/v1/jobs/{id}`); once it has succeeded the
    /// person is gone (404).
    job_id: steward_domain::JobId,
}

/// Erase a person for good (owners and admins): the key that seals their
/// memory is destroyed, their messages, their conversations (replies
/// included) and the leads in them, their handles and ratings are deleted;
/// counters stay as anonymous totals. Runs as an `erase` job; the request
/// and the erasure are audited. Restoring a backup made before erases them
/// again.
#[utoipa::path(delete, path = "/people/{id}", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = ErasureQueued), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn erase_person(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, axum::Json<ErasureQueued>)> {
    auth.require_admin()?;
    let scope = auth.0.scope();
    let args = steward_domain::jobs::EraseArgs {
        person_id: id.into(),
    };
    let job =
        steward_store::NewJob::of(&args, state.config.jobs.max_attempts).for_org(scope.org_id());
    let job = state.store.request_erasure(&scope, id.into(), job).await?;
    metrics::counter!("steward_data_requests_total", "kind" => "erasure").increment(1);
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ErasureQueued { job_id: job.id }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// The other person, who becomes part of this one and is no more.
    person_id: Uuid,
}

/// Merge another person into this one (owners and admins): their handles,
/// conversations and messages become this person's. Two people who each
/// have a member account are not merged.
#[utoipa::path(post, path = "/people/{id}/merge", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = MergeBody,
    responses((status = 200, body = PersonDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "both have a member account (`both_members`), or it is the same person (`same_person`)", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
async fn merge_person(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
    Json(body): Json<MergeBody>,
) -> ApiResult<axum::Json<PersonDto>> {
    auth.require_admin()?;
    let merged = state
        .store
        .merge_people(&auth.0.scope(), id.into(), body.person_id.into())
        .await?;
    Ok(axum::Json(merged.into()))
}

/// A person's memory and exports are reached by the organization's owners
/// and admins, and by the member who is that person; never by advisors.
async fn may_reach_personal_data(
    state: &SharedState,
    auth: &Auth,
    person: PersonId,
) -> ApiResult<()> {
    auth.require_conversations()?;
    let scope = auth.0.scope();
    state.store.person(&scope, person).await?;
    if auth.0.role().can_administer() {
        return Ok(());
    }
    let own = match auth.0.member() {
        Some(user) => match state.store.member_person(&scope, user).await {
            Ok(own) => Some(own.id),
            Err(steward_store::StoreError::NotFound) => None,
            Err(error) => return Err(error.into()),
        },
        None => None,
    };
    match own == Some(person) {
        true => Ok(()),
        false => Err(ApiError::forbidden()),
    }
}

fn memory_of(state: &SharedState) -> steward_tools::memory::Memory {
    steward_tools::memory::Memory::new(state.store.clone(), state.sealer.clone())
}

#[derive(Serialize, ToSchema)]
pub struct FactDto {
    id: FactId,
    /// What the assistant noted, in the third person.
    text: String,
    /// When it was learnt.
    created_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct MemoryList {
    /// Oldest first.
    facts: Vec<FactDto>,
}

/// What the organization's assistants remember of a person (owners, admins,
/// and the member who is that person): facts learnt from what they said
/// about themselves, kept sealed under a key of their own.
#[utoipa::path(get, path = "/people/{id}/memory", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = MemoryList), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn person_memory(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<MemoryList>> {
    let person = PersonId::from(id);
    may_reach_personal_data(&state, &auth, person).await?;
    let facts = memory_of(&state).facts(&auth.0.scope(), person).await?;
    Ok(axum::Json(MemoryList {
        facts: facts
            .into_iter()
            .map(|f| FactDto {
                id: f.id,
                text: f.text,
                created_at: f.created_at,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Forgotten {
    /// How many facts were deleted.
    forgotten: u64,
}

/// Forget everything the assistants remember of a person, for good.
#[utoipa::path(delete, path = "/people/{id}/memory", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Forgotten), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn forget_memory(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::Json<Forgotten>> {
    let person = PersonId::from(id);
    may_reach_personal_data(&state, &auth, person).await?;
    let forgotten = state.store.forget_memory(&auth.0.scope(), person).await?;
    Ok(axum::Json(Forgotten { forgotten }))
}

/// Forget one fact of a person's memory, for good.
#[utoipa::path(delete, path = "/people/{id}/memory/{fact_id}", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("fact_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn forget_fact(
    State(state): State<SharedState>,
    auth: Auth,
    Path((id, fact)): Path<(Uuid, Uuid)>,
) -> ApiResult<StatusCode> {
    let person = PersonId::from(id);
    may_reach_personal_data(&state, &auth, person).await?;
    state
        .store
        .forget_fact(&auth.0.scope(), person, fact.into())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct ExportDto {
    id: steward_domain::ExportId,
    /// `pending` while it is written, then `ready` (download it) or
    /// `failed` (see `reason`).
    state: steward_domain::ExportState,
    /// The size of the zip, once ready.
    bytes: Option<i64>,
    reason: Option<String>,
    created_at: DateTime<Utc>,
    /// After it the export is gone: deleted with its zip.
    expires_at: DateTime<Utc>,
    /// Where to get it once ready (with the same credentials).
    download_url: String,
}

impl From<steward_store::Export> for ExportDto {
    fn from(e: steward_store::Export) -> Self {
        Self {
            download_url: format!("/api/v1/people/{}/exports/{}/download", e.person_id, e.id),
            id: e.id,
            state: e.state,
            bytes: e.bytes,
            reason: e.reason,
            created_at: e.created_at,
            expires_at: e.expires_at,
        }
    }
}

/// Export everything Steward holds about a person (owners, admins, and the
/// member who is that person): their handles, messages, what the assistant
/// remembers of them in clear, ratings, leads and skill uses, as a zip of
/// JSON and a readable page. Written by an `export` job; downloadable for
/// 24 hours, then deleted.
#[utoipa::path(post, path = "/people/{id}/export", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 202, body = ExportDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn export_person(
    State(state): State<SharedState>,
    auth: Auth,
    Path(id): Path<Uuid>,
) -> ApiResult<(StatusCode, axum::Json<ExportDto>)> {
    let person = PersonId::from(id);
    may_reach_personal_data(&state, &auth, person).await?;
    let scope = auth.0.scope();
    let export = steward_domain::ExportId::new();
    let args = steward_domain::jobs::ExportArgs {
        export_id: Some(export),
    };
    let job =
        steward_store::NewJob::of(&args, state.config.jobs.max_attempts).for_org(scope.org_id());
    let expires_at = steward_store::now() + EXPORT_LIFETIME;
    let (export, _) = state
        .store
        .request_export(&scope, person, export, expires_at, job)
        .await?;
    metrics::counter!("steward_data_requests_total", "kind" => "export").increment(1);
    Ok((StatusCode::ACCEPTED, axum::Json(export.into())))
}

/// The person's export, while its day lasts.
async fn live_export(
    state: &SharedState,
    auth: &Auth,
    person: PersonId,
    export: Uuid,
) -> ApiResult<steward_store::Export> {
    may_reach_personal_data(state, auth, person).await?;
    let export = state.store.export(&auth.0.scope(), export.into()).await?;
    if export.person_id != person || export.expires_at <= steward_store::now() {
        return Err(ApiError::NotFound);
    }
    Ok(export)
}

/// An export's state; gone (404) once its day is over.
#[utoipa::path(get, path = "/people/{id}/exports/{export_id}", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("export_id" = Uuid, Path)),
    responses((status = 200, body = ExportDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn person_export(
    State(state): State<SharedState>,
    auth: Auth,
    Path((id, export)): Path<(Uuid, Uuid)>,
) -> ApiResult<axum::Json<ExportDto>> {
    let export = live_export(&state, &auth, id.into(), export).await?;
    Ok(axum::Json(export.into()))
}

/// The export's zip (`person.json` and `person.html`), once ready; 409
/// `export_not_ready` before.
#[utoipa::path(get, path = "/people/{id}/exports/{export_id}/download", tag = "people", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("export_id" = Uuid, Path)),
    responses((status = 200, description = "the zip", content_type = "application/zip"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "not written yet, or it failed (`export_not_ready`)", body = ErrorBody)))]
async fn download_export(
    State(state): State<SharedState>,
    auth: Auth,
    Path((id, export)): Path<(Uuid, Uuid)>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let export = live_export(&state, &auth, id.into(), export).await?;
    let Some(key) = export
        .blob_key
        .filter(|_| export.state == steward_domain::ExportState::Ready)
    else {
        return Err(ApiError::Conflict {
            code: "export_not_ready",
            message: "the export is not ready: see its state".into(),
        });
    };
    let zip = state.blobs.get(&key).await.map_err(|e| match e {
        steward_knowledge::BlobError::NotFound => ApiError::NotFound,
        other => ApiError::Internal(format!("reading an export: {other}")),
    })?;
    let disposition = format!("attachment; filename=\"steward-export-{}.zip\"", export.id);
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/zip".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        zip,
    )
        .into_response())
}
