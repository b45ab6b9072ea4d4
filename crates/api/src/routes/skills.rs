//! An organization's skills (the Agent Skills format): uploaded as a zip of
//! the skill's folder or as its `SKILL.md` alone, listed, read version by
//! version, deleted, given to chatbots (`PATCH /chatbots/{id}`), and
//! optionally kept to some people or roles (`/skills/{name}/assignees`).
//! Owners and admins upload, assign and delete; members read; advisors see
//! none.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use steward_domain::{PersonId, Role};
use steward_store::{NewSkill, Skill, SkillAssignees};
use steward_tools::skills::{self, MAX_UPLOAD_BYTES, SkillPackage};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Json, Path};
use crate::state::SharedState;

pub fn router() -> OpenApiRouter<SharedState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(upload_skill))
        .layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES));
    OpenApiRouter::new()
        .merge(uploads)
        .routes(routes!(list_skills))
        .routes(routes!(skill_versions, delete_skill))
        .routes(routes!(skill_assignees, assign_skill))
}

/// People one skill may be kept to, at most.
const MAX_ASSIGNED_PEOPLE: usize = 1_000;
/// Roles listed, at most: there are four.
const MAX_ASSIGNED_ROLES: usize = 4;

#[derive(Serialize, ToSchema)]
pub struct SkillDto {
    name: String,
    /// 1 for the first upload of the name, one more for each next.
    version: i64,
    /// What the skill is for and when to use it: what a model is shown.
    description: String,
    /// Its resource files, by their path in the skill's folder.
    files: Vec<String>,
    bytes: i64,
    /// Who uploaded it (`user:{id}`, `api_key:{id}` or `operator`).
    uploaded_by: String,
    created_at: DateTime<Utc>,
    /// Set once the skill was deleted.
    deleted_at: Option<DateTime<Utc>>,
}

impl From<&Skill> for SkillDto {
    fn from(s: &Skill) -> Self {
        Self {
            name: s.name.clone(),
            version: s.version,
            description: s.description.clone(),
            files: s.files.clone(),
            bytes: s.bytes,
            uploaded_by: s.uploaded_by.clone(),
            created_at: s.created_at,
            deleted_at: s.deleted_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SkillVersion {
    #[serde(flatten)]
    skill: SkillDto,
    /// `SKILL.md` as uploaded.
    skill_md: String,
}

#[derive(Serialize, ToSchema)]
pub struct SkillList {
    /// The latest version of each skill, by name.
    skills: Vec<SkillDto>,
}

#[derive(Serialize, ToSchema)]
pub struct SkillVersions {
    /// Newest first, deleted ones too.
    versions: Vec<SkillVersion>,
}

/// A skill without resource files, sent as JSON: Steward writes its
/// `SKILL.md` from the fields.
#[derive(serde::Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkillJson {
    #[schema(schema_with = crate::contract::skill_name)]
    name: String,
    /// What it does and when to use it: all a model sees until it loads it.
    #[schema(schema_with = crate::contract::skill_description)]
    description: String,
    /// The Markdown instructions.
    #[schema(schema_with = crate::contract::skill_instructions)]
    instructions: String,
}

impl SkillJson {
    /// The `SKILL.md` these fields make: YAML front matter, then the body.
    fn skill_md(&self) -> String {
        #[derive(Serialize)]
        struct Front<'a> {
            name: &'a str,
            description: &'a str,
        }
        let front = serde_norway::to_string(&Front {
            name: &self.name,
            description: &self.description,
        })
        .expect("two strings serialize");
        format!("---\n{front}---\n{}\n", self.instructions)
    }
}

/// What the body holds: a zip (by its type or its first bytes), Markdown,
/// or JSON carrying Markdown.
fn package(headers: &HeaderMap, body: &[u8]) -> ApiResult<SkillPackage> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let zipped = matches!(
        content_type.as_str(),
        "application/zip" | "application/x-zip-compressed"
    ) || (content_type == "application/octet-stream"
        && body.starts_with(b"PK\x03\x04"));
    let markdown = matches!(content_type.as_str(), "text/markdown" | "text/plain");
    let read = if zipped {
        skills::from_zip(body)
    } else if markdown {
        skills::from_markdown(body)
    } else if content_type == "application/json" {
        let sent: SkillJson = serde_json::from_slice(body)
            .map_err(|e| ApiError::unprocessable("invalid_body", e.to_string()))?;
        let length = sent.instructions.chars().count();
        if length > skills::MAX_INSTRUCTIONS_CHARS {
            return Err(ApiError::unprocessable(
                "invalid_skill",
                format!(
                    "instructions are {length} characters; at most {}",
                    skills::MAX_INSTRUCTIONS_CHARS
                ),
            ));
        }
        skills::from_markdown(sent.skill_md().as_bytes())
    } else {
        return Err(ApiError::UnsupportedMediaType);
    };
    read.map_err(|e| ApiError::unprocessable("invalid_skill", e.0))
}

/// Upload a skill (owners and admins): a zip of its folder
/// (`Content-Type: application/zip`), its `SKILL.md` alone
/// (`text/markdown`), or as JSON its name, description and instructions
/// (no resource files). A name uploaded before gets a new version.
#[utoipa::path(post, path = "/skills", tag = "skills", security(("bearer" = [])),
    request_body(content = SkillJson, description = "name, description and instructions; or a zip of the skill's folder as application/zip, or its SKILL.md as text/markdown"),
    responses((status = 201, body = SkillDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "another upload of the same name was stored at the same moment; send it again", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, description = "not a skill: why (`invalid_skill`)", body = ErrorBody)))]
async fn upload_skill(
    State(state): State<SharedState>,
    auth: Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, axum::Json<SkillDto>)> {
    auth.require_admin()?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::bad_request("unreadable_body", rejection.body_text()),
    })?;
    let package = package(&headers, &body)?;
    let stored = state
        .store
        .add_skill(
            &auth.0.scope(),
            NewSkill {
                name: package.name,
                description: package.description,
                body: package.body,
                skill_md: package.skill_md,
                files: package.files,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(SkillDto::from(&stored))))
}

/// The organization's skills: the latest version of each.
#[utoipa::path(get, path = "/skills", tag = "skills", security(("bearer" = [])),
    responses((status = 200, body = SkillList), (status = 403, body = ErrorBody)))]
async fn list_skills(
    State(state): State<SharedState>,
    auth: Auth,
) -> ApiResult<axum::Json<SkillList>> {
    auth.require_conversations()?;
    let found = state.store.skills(&auth.0.scope()).await?;
    Ok(axum::Json(SkillList {
        skills: found.iter().map(SkillDto::from).collect(),
    }))
}

/// Every version of a skill, newest first, with its `SKILL.md`.
#[utoipa::path(get, path = "/skills/{name}", tag = "skills", security(("bearer" = [])),
    params(("name" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    responses((status = 200, body = SkillVersions), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn skill_versions(
    State(state): State<SharedState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<SkillVersions>> {
    auth.require_conversations()?;
    let found = state.store.skill_versions(&auth.0.scope(), &name).await?;
    Ok(axum::Json(SkillVersions {
        versions: found
            .iter()
            .map(|s| SkillVersion {
                skill: s.into(),
                skill_md: s.skill_md.clone(),
            })
            .collect(),
    }))
}

/// Delete a skill (owners and admins): no chatbot offers it any more; its
/// versions stay readable for the replies that used them.
#[utoipa::path(delete, path = "/skills/{name}", tag = "skills", security(("bearer" = [])),
    params(("name" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_skill(
    State(state): State<SharedState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    state.store.delete_skill(&auth.0.scope(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who may use a skill, in the chatbots that offer it: the people listed
/// and the members whose role is listed. Both empty: everyone.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssigneesDto {
    #[serde(default)]
    #[schema(max_items = 1000)]
    people: Vec<PersonId>,
    /// Members with these roles.
    #[serde(default)]
    #[schema(max_items = 4)]
    roles: Vec<Role>,
}

impl From<SkillAssignees> for AssigneesDto {
    fn from(a: SkillAssignees) -> Self {
        Self {
            people: a.people,
            roles: a.roles,
        }
    }
}

/// Who may use a skill (both lists empty: everyone its chatbots talk to).
#[utoipa::path(get, path = "/skills/{name}/assignees", tag = "skills", security(("bearer" = [])),
    params(("name" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    responses((status = 200, body = AssigneesDto), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn skill_assignees(
    State(state): State<SharedState>,
    auth: Auth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<AssigneesDto>> {
    auth.require_conversations()?;
    let found = state.store.skill_assignees(&auth.0.scope(), &name).await?;
    Ok(axum::Json(found.into()))
}

/// Keep a skill to some people and roles (owners and admins), replacing
/// whom it was kept to before; both lists empty gives it to everyone again.
/// The chatbots that offer it offer it only to them: no one else sees it in
/// the prompt or can load it.
#[utoipa::path(put, path = "/skills/{name}/assignees", tag = "skills", security(("bearer" = [])),
    params(("name" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", max_length = 64)),
    request_body = AssigneesDto,
    responses((status = 200, body = AssigneesDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "a person listed is not the organization's (`unknown_person`): merged since, or never", body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, description = "more than 1,000 people or 4 roles", body = ErrorBody)))]
async fn assign_skill(
    State(state): State<SharedState>,
    auth: Auth,
    Path(name): Path<String>,
    Json(sent): Json<AssigneesDto>,
) -> ApiResult<axum::Json<AssigneesDto>> {
    auth.require_admin()?;
    if sent.people.len() > MAX_ASSIGNED_PEOPLE {
        return Err(ApiError::unprocessable(
            "invalid_body",
            format!("people: at most {MAX_ASSIGNED_PEOPLE}; give a role instead"),
        ));
    }
    if sent.roles.len() > MAX_ASSIGNED_ROLES {
        return Err(ApiError::unprocessable(
            "invalid_body",
            format!("roles: at most {MAX_ASSIGNED_ROLES}"),
        ));
    }
    let scope = auth.0.scope();
    let assignees = SkillAssignees {
        people: sent.people,
        roles: sent.roles,
    };
    state.store.assign_skill(&scope, &name, &assignees).await?;
    let stored = state.store.skill_assignees(&scope, &name).await?;
    Ok(axum::Json(stored.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skill_sent_as_json_reads_back_as_sent_whatever_its_text() {
        for (name, description) in [
            ("123", "yes"),
            ("true", "- a list item?"),
            ("null", "key: value # and a comment"),
            ("a-b", "'quoted' and \"double\", then\ttab\r\nand: more"),
            ("x", "  padded  "),
        ] {
            let sent = SkillJson {
                name: name.into(),
                description: description.into(),
                instructions: "---\nnot front matter\n---".into(),
            };
            let read = skills::from_markdown(sent.skill_md().as_bytes()).unwrap();
            assert_eq!(read.name, name);
            assert_eq!(read.description, description.trim());
            assert_eq!(read.body, sent.instructions);
        }
    }
}
