//! What makes the OpenAPI document exact (`scripts/contract` holds it to
//! that): the error answers every operation can give through the shared
//! layers, and request schemas that state the server's own rules.

use steward_channels::{ChannelConfig, FieldRule};
use steward_domain::ChannelKind;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};

/// Adds the statuses an operation can answer through the shared layers and
/// extractors, where the handler's own list does not name them.
pub fn declare_common_errors(openapi: &mut OpenApi) {
    for item in openapi.paths.paths.values_mut() {
        // Only POST passes the Idempotency-Key layer.
        let operations = [
            (&mut item.get, false),
            (&mut item.put, false),
            (&mut item.post, true),
            (&mut item.delete, false),
            (&mut item.patch, false),
        ];
        for (operation, keyed) in operations {
            if let Some(operation) = operation {
                declare(operation, keyed);
            }
        }
    }
}

fn declare(operation: &mut Operation, keyed: bool) {
    let mut statuses = vec![
        (
            "408",
            "the request took longer than http.request_timeout_secs",
        ),
        (
            "500",
            "an unexpected failure; details are in the server's log",
        ),
        ("503", "a dependency (the database) is unavailable"),
    ];
    if operation.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        statuses.push(("400", "a malformed parameter"));
        statuses.push(("404", "no such resource in this organization"));
    }
    if operation.request_body.is_some() {
        statuses.push(("400", "a malformed body"));
        statuses.push(("413", "the body is too large"));
        statuses.push(("415", "the body is not of the declared content type"));
        statuses.push(("422", "the body is well formed but not valid"));
    }
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        statuses.push(("401", "no valid bearer token or API key"));
        statuses.push(("403", "the caller's role may not do this"));
    }
    if keyed {
        // The Idempotency-Key layer: a bad key, a key reused for another
        // request, a repeat while the first runs or after its answer was lost.
        statuses.push(("400", "a malformed Idempotency-Key"));
        statuses.push((
            "409",
            "a request with this Idempotency-Key is running, or its answer was lost",
        ));
        statuses.push(("422", "the Idempotency-Key was used for another request"));
    }
    for (status, description) in statuses {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(error_response(description)));
    }
}

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

// The domain's text rules (`steward_domain` values), as schemas for request
// fields, so that a request valid by the schema is one Steward takes.

/// Control characters (Unicode Cc) that no text may hold.
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// The same, less tab, line feed and carriage return, for multi-line text.
const CONTROL_BUT_LINES: &str = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f";

fn text(min: usize, max: usize, pattern: String) -> Object {
    text_builder(min, max, pattern).build()
}

fn text_builder(min: usize, max: usize, pattern: String) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
}

/// `schema`, or null: an optional field a client may also send as null.
fn or_null(schema: Object) -> Object {
    let mut schema = schema;
    let own = std::mem::replace(&mut schema.schema_type, SchemaType::AnyValue);
    schema.schema_type = match own {
        SchemaType::Type(t) => SchemaType::from_iter([t, Type::Null]),
        other => other,
    };
    schema
}

pub fn optional_chatbot_name() -> Object {
    or_null(chatbot_name())
}

pub fn optional_display_name() -> Object {
    or_null(display_name())
}

pub fn optional_system_prompt() -> Object {
    or_null(system_prompt())
}

pub fn optional_model_name() -> Object {
    or_null(model_name())
}

pub fn optional_temperature() -> Object {
    or_null(temperature())
}

/// The roles an API key may carry (never owner).
pub fn optional_key_role() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            ["admin", "member", "advisor"]
                .into_iter()
                .map(Some)
                .chain([None]),
        ))
        .build()
}

/// An upload: one or more file parts (each with a file name), non-empty.
fn upload_form(max_files: usize) -> Object {
    let files = ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Binary,
                )))
                .min_length(Some(1)),
        )
        .min_items(Some(1))
        .max_items(Some(max_files));
    // Every part is read as a file: a part of any other name is one too, and
    // a part without a file name is refused.
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .property("file", files)
        .required("file")
        .build()
}

/// A URL Steward may be asked to fetch (see `steward_domain::WebUrl`).
pub fn web_url() -> Object {
    text(
        8,
        steward_domain::WebUrl::MAX_CHARS,
        steward_domain::WebUrl::PATTERN.into(),
    )
}

fn bounded_integer(min: i64, max: i64, nullable: bool) -> Object {
    let schema = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(Some(max))
        .build();
    if nullable { or_null(schema) } else { schema }
}

/// `POST …/knowledge/crawl`, with the operator's crawl bounds.
fn start_crawl(max_pages: i32, max_depth: i32) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .property("url", web_url())
        .required("url")
        .property("max_pages", bounded_integer(1, max_pages.into(), true))
        .property("max_depth", bounded_integer(0, max_depth.into(), true))
        .build()
}

/// One line: no control characters, and not only spaces.
fn single_line(max: usize) -> Object {
    text(
        1,
        max,
        format!("^[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$"),
    )
}

/// A chatbot's (or an API key's) name.
pub fn chatbot_name() -> Object {
    single_line(100)
}

/// An organization's or a person's name, or a document's title.
pub fn display_name() -> Object {
    single_line(200)
}

/// A system prompt: may be empty, may span lines.
pub fn system_prompt() -> Object {
    text(0, 20_000, format!("^[^{CONTROL_BUT_LINES}]*$"))
}

/// What a user writes: not empty, may span lines.
pub fn message_text() -> Object {
    text(
        1,
        32_000,
        format!("^[^{CONTROL_BUT_LINES}]*[^\\s{CONTROL}][^{CONTROL_BUT_LINES}]*$"),
    )
}

/// Why a person rated a reply: not empty, may span lines.
pub fn feedback_comment() -> Object {
    text(
        1,
        2_000,
        format!("^[^{CONTROL_BUT_LINES}]*[^\\s{CONTROL}][^{CONTROL_BUT_LINES}]*$"),
    )
}

/// Characters of a context document sent as text: at most, escaped in JSON
/// in the longest way, it still fits the default body limit.
pub const MAX_DOCUMENT_TEXT_CHARS: usize = 80_000;

/// A document given as text: not only spaces.
pub fn document_text() -> Object {
    text(1, MAX_DOCUMENT_TEXT_CHARS, r"^[\s\S]*\S[\s\S]*$".into())
}

/// The tools a chatbot may call: `server.tool` names, at most 64, or null.
pub fn tool_names() -> utoipa::openapi::Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(text(3, 200, r"^[a-z0-9-]+\.[A-Za-z0-9_-]+$".into()))
        .max_items(Some(64))
        .build()
}

/// The skills a chatbot offers, by name.
pub fn skill_names() -> utoipa::openapi::Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(skill_name())
        .max_items(Some(64))
        .build()
}

/// A skill's name, as the Agent Skills format allows it.
pub fn skill_name() -> Object {
    text(1, 64, "^[a-z0-9]+(-[a-z0-9]+)*$".into())
}

/// What a skill is for: not only spaces, one or more lines.
pub fn skill_description() -> Object {
    text(
        1,
        1_024,
        format!("^[^{CONTROL_BUT_LINES}]*[^\\s{CONTROL}][^{CONTROL_BUT_LINES}]*$"),
    )
}

/// A skill's instructions: Markdown, may be empty; short enough in any
/// script to keep SKILL.md within its cap.
pub fn skill_instructions() -> Object {
    text(
        0,
        steward_tools::skills::MAX_INSTRUCTIONS_CHARS,
        format!("^[^{CONTROL_BUT_LINES}]*$"),
    )
}

/// An MCP server's name in an organization: its tools are `name.tool`.
pub fn tool_server_name() -> Object {
    text(1, 40, "^[a-z0-9][a-z0-9-]*$".into())
}

/// Headers sent to an MCP server (an API key, say): at most 16, or null.
pub fn tool_server_headers() -> Object {
    or_null(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(16))
            .property_names(Some(text(1, 64, "^[A-Za-z0-9-]+$".into())))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
                text(1, 2048, format!("^[^{CONTROL}]+$")),
            )))))
            .build(),
    )
}

/// The tools of a server a chatbot may be given (by their names on the
/// server), at most 64; null for all of them.
pub fn allowed_tools() -> utoipa::openapi::Array {
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(text(1, 128, "^[A-Za-z0-9_.-]+$".into()))
        .max_items(Some(64))
        .build()
}

/// An integration of the catalogue, by id.
pub fn integration_id() -> Object {
    text(1, 64, "^[a-z0-9-]+$".into())
}

/// A model's name: no spaces.
pub fn model_name() -> Object {
    text(1, 200, format!("^[^\\s{CONTROL}]+$"))
}

/// A password: the length is the rule.
pub fn password() -> Object {
    text(8, 1024, "^[^\\u0000]*$".into())
}

/// An email address in the plain form every mail system takes.
pub fn email() -> Object {
    text(
        3,
        254,
        r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$".into(),
    )
}

/// Sampling temperature.
pub fn temperature() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(0.0))
        .maximum(Some(2.0))
        .build()
}

/// The schema of a channel configuration field's rule.
/// An optional field may also be sent as null (`ChannelConfig::parse` reads
/// it as absent).
fn field_schema(rule: FieldRule, required: bool) -> Schema {
    let scalar = match rule {
        FieldRule::Text => text(
            1,
            2048,
            format!("^[^{CONTROL}]*[^\\s{CONTROL}][^{CONTROL}]*$"),
        ),
        FieldRule::Digits(max) => text(1, max, "^[0-9]+$".into()),
        FieldRule::Token(max) => text(1, max, "^[A-Za-z0-9_-]+$".into()),
        FieldRule::Host => text(1, 253, r"^[A-Za-z0-9.:\[\]-]+$".into()),
        FieldRule::Port => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(65535))
            .build(),
        FieldRule::Email => email(),
        FieldRule::TlsOn => ObjectBuilder::new()
            .schema_type(Type::Boolean)
            .enum_values(Some([true]))
            .build(),
        FieldRule::Folder => text(1, 200, format!("^[^{CONTROL}]+$")),
        FieldRule::CallbackUrl => text(
            9,
            steward_domain::WebUrl::MAX_CHARS,
            steward_domain::WebUrl::CALLBACK_PATTERN.into(),
        ),
        FieldRule::OneOf(words) => ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(words.iter().copied()))
            .build(),
        // Prefixes are letters and `-`, nothing a pattern reads otherwise.
        FieldRule::Prefixed(prefix) => text(prefix.len() + 1, 2048, format!("^{prefix}[^\\s]+$")),
        FieldRule::Origins => {
            let kinds = match required {
                true => SchemaType::Type(Type::Array),
                false => SchemaType::from_iter([Type::Array, Type::Null]),
            };
            return ArrayBuilder::new()
                .schema_type(kinds)
                .items(text(
                    9, // https://a
                    steward_channels::web::MAX_ORIGIN_CHARS,
                    steward_channels::web::ORIGIN_PATTERN.into(),
                ))
                .max_items(Some(steward_channels::web::MAX_ORIGINS))
                .build()
                .into();
        }
    };
    Schema::Object(if required { scalar } else { or_null(scalar) })
}

/// `POST /chatbots/{id}/channels`: one shape per kind (two for Slack's two
/// modes), so that a body valid by the schema is one Steward configures
/// (the shapes are the channels crate's: `ChannelConfig::shapes`).
fn create_channel() -> Schema {
    let mut one_of = OneOfBuilder::new();
    let shapes = ChannelKind::ALL
        .iter()
        .flat_map(|kind| ChannelConfig::shapes(*kind).iter().map(move |s| (kind, *s)));
    for (kind, fields) in shapes {
        let mut config = ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for field in fields {
            config = config.property(field.name, field_schema(field.rule, field.required));
            if field.required {
                config = config.required(field.name);
            }
        }
        let variant = ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .property(
                "kind",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([kind.as_str()])),
            )
            .required("kind")
            .property("name", chatbot_name())
            .required("name")
            .property("config", config)
            .required("config");
        one_of = one_of.item(variant);
    }
    Schema::OneOf(one_of.build())
}

/// `POST /integrations/enable`: one shape per integration Steward serves,
/// each with its own settings (the tools crate's `builtin::check_settings`).
fn enable_integration() -> Schema {
    use steward_tools::builtin::{self, pricing};
    let number = |min: f64, max: f64| {
        ObjectBuilder::new()
            .schema_type(Type::Number)
            .minimum(Some(min))
            .maximum(Some(max))
    };
    let whole = |min: u64, max: u64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min as f64))
            .maximum(Some(max as f64))
    };
    let closed = || {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
    };
    let tier = closed()
        .property("from", whole(2, pricing::MAX_QUANTITY))
        .required("from")
        .property("percent_off", number(0.0, 100.0))
        .required("percent_off");
    let item = closed()
        .property("name", single_line(200))
        .required("name")
        .property("unit_price", number(0.0, pricing::MAX_UNIT_PRICE))
        .required("unit_price")
        .property("unit", or_null(single_line(40)))
        .property(
            "min_quantity",
            or_null(whole(1, pricing::MAX_QUANTITY).build()),
        )
        .property(
            "volume",
            ArrayBuilder::new()
                .items(tier.build())
                .max_items(Some(pricing::MAX_TIERS)),
        );
    let price_list = closed()
        .property("currency", text(3, 3, "^[A-Z]{3}$".into()))
        .required("currency")
        .property("tax_percent", or_null(number(0.0, 100.0).build()))
        .property("tax_name", or_null(single_line(40)))
        .property(
            "items",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .min_properties(Some(1))
                .max_properties(Some(pricing::MAX_ITEMS))
                .property_names(Some(text(1, 64, pricing::SKU_PATTERN.into())))
                .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
                    Schema::Object(item.build()),
                )))),
        )
        .required("items")
        .build();
    let slack =
        closed()
            .property(
                "channel_id",
                ObjectBuilder::new().schema_type(Type::String).format(Some(
                    SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid),
                )),
            )
            .required("channel_id")
            .property(
                "to",
                text(3, 31, builtin::notify::SLACK_CONVERSATION_PATTERN.into()),
            )
            .required("to")
            .build();
    let notify = or_null(
        closed()
            .property("mail_to", or_null(email()))
            .property("slack", or_null(slack))
            .build(),
    );
    let mut one_of = OneOfBuilder::new();
    for id in builtin::SERVERS {
        let mut variant = closed().property(
            "integration_id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([*id])),
        );
        variant = if *id == builtin::PRICING_CALCULATOR {
            variant
                .property("config", price_list.clone())
                .required("config")
        } else {
            variant.property("config", notify.clone())
        };
        one_of = one_of.item(variant.required("integration_id"));
    }
    Schema::OneOf(one_of.build())
}

/// Request schemas whose rules span fields or come from the configuration,
/// written here rather than derived.
pub fn declare_exact_schemas(openapi: &mut OpenApi, knowledge: &steward_config::KnowledgeConfig) {
    if let Some(components) = openapi.components.as_mut() {
        let schemas = &mut components.schemas;
        schemas.insert("CreateChannel".into(), RefOr::T(create_channel()));
        schemas.insert("EnableIntegration".into(), RefOr::T(enable_integration()));
        schemas.insert(
            "UploadForm".into(),
            RefOr::T(Schema::Object(upload_form(knowledge.max_files_per_upload))),
        );
        schemas.insert(
            "StartCrawl".into(),
            RefOr::T(Schema::Object(start_crawl(
                knowledge.crawl_max_pages,
                knowledge.crawl_max_depth,
            ))),
        );
    }
}
