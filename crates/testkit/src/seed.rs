//! Sample data for tests that copy or restore a database: an organization
//! with a chatbot, a conversation, an ingested document with its original
//! (and a passage with a vector), and a web page's copy in the blob store.

use steward_domain::*;
use steward_knowledge::Blobs;
use steward_store::*;

/// An organization named `name` with its owner and a chatbot "Desk":
/// the owner's scope and the chatbot.
pub async fn organization_with_chatbot(
    store: &dyn Store,
    name: &str,
    tier: Tier,
) -> (TenantScope, Chatbot) {
    let domain = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase();
    let (org, owner) = store
        .create_organization(
            NewOrganization {
                name: OrganizationName::parse("name", name).unwrap(),
                tier,
            },
            NewUser {
                email: Email::parse("email", &format!("owner@{domain}.example.org")).unwrap(),
                name: Some(PersonName::parse("name", "Zoë Owner").unwrap()),
                role: Role::Owner,
                password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
                must_change_password: false,
            },
        )
        .await
        .unwrap();
    let scope = Principal::verified(org.id, Actor::User(owner.id), Role::Owner).scope();
    let bot = store
        .create_chatbot(
            &scope,
            NewChatbot {
                name: ChatbotName::parse("name", "Desk").unwrap(),
                system_prompt: SystemPrompt::parse("system_prompt", "Be brief.").unwrap(),
                temperature: Temperature::parse("temperature", 0.7).unwrap(),
                model: None,
                status: ChatbotStatus::Active,
            },
        )
        .await
        .unwrap();
    (scope, bot)
}

/// A message Telegram user `handle` wrote to `bot`, in `conversation` or a
/// new one, stored as a channel stores it (the author found or made by
/// handle).
pub async fn telegram_message(
    store: &dyn Store,
    scope: &TenantScope,
    bot: ChatbotId,
    conversation: Option<ConversationId>,
    handle: &str,
    text: &str,
) -> Message {
    let message = NewMessage {
        id: MessageId::new(),
        chatbot_id: bot,
        conversation: match conversation {
            Some(id) => ConversationChoice::Existing(id),
            None => ConversationChoice::Start(ConversationId::new()),
        },
        role: MessageRole::User,
        text: MessageText::parse("text", text).unwrap(),
        channel: "telegram".into(),
        external_id: None,
        answers: None,
        channel_id: None,
        channel_secrets: None,
        meta: None,
        tokens: 0,
        then: Vec::new(),
        sender: Some(Sender::new(
            Identity::parse("sender", IdentityKind::Telegram, handle).unwrap(),
        )),
        forwarded: false,
        conversation_key: None,
    };
    store.add_message(scope, message).await.unwrap()
}

/// Bytes that do not compress, like the PDFs and images people upload.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Seeds `store` and `blobs`; `more_messages` adds that many to the conversation.
pub async fn seed(store: &dyn Store, blobs: &Blobs, more_messages: usize) {
    let (scope, bot) = organization_with_chatbot(store, "Acme Ünïcode", Tier::Pro).await;
    let org = scope.org_id();
    let conversation = ConversationId::new();
    let texts = [
        "Wie lange dauern Erstattungen? 🧾",
        "Vierzehn Tage.\n\"quoted\"",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain((0..more_messages).map(|n| format!("Message {n}: ' \\ ; -- ∑")));
    for (i, text) in texts.enumerate() {
        store
            .add_message(
                &scope,
                NewMessage {
                    id: MessageId::new(),
                    chatbot_id: bot.id,
                    conversation: if i == 0 {
                        ConversationChoice::Start(conversation)
                    } else {
                        ConversationChoice::Existing(conversation)
                    },
                    role: if i % 2 == 0 {
                        MessageRole::User
                    } else {
                        MessageRole::Assistant
                    },
                    text: MessageText::parse("text", &text).unwrap(),
                    channel: "api".into(),
                    external_id: None,
                    answers: None,
                    channel_id: None,
                    channel_secrets: None,
                    meta: None,
                    tokens: 12,
                    then: Vec::new(),
                    sender: None,
                    forwarded: false,
                    conversation_key: None,
                },
            )
            .await
            .unwrap();
    }
    let id = DocumentId::new();
    let key = Blobs::document_key(org, id);
    let original: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    blobs.put(&key, original.into()).await.unwrap();
    store
        .add_document(
            &scope,
            NewDocument {
                id,
                chatbot_id: Some(bot.id),
                source: DocumentSource::Upload,
                label: "refunds.md".into(),
                url: None,
                blob_key: Some(key),
                bytes: 10_000,
            },
            3,
        )
        .await
        .unwrap();
    store.start_ingest(&scope, id).await.unwrap();
    store
        .finish_ingest(
            &scope,
            id,
            Ingested {
                bytes: 10_000,
                content_type: "text/markdown".into(),
                content_hash: "d1g3st".into(),
                chunks: vec![
                    NewChunk {
                        heading: "Refunds".into(),
                        text: "Refunds take fourteen days.".into(),
                        embedding: None,
                    },
                    NewChunk {
                        heading: "Refunds › Exceptions".into(),
                        text: "Gift cards are not refunded.".into(),
                        embedding: Some(vec![0.1, -0.25, 1e-7, 3.5]),
                    },
                ],
            },
        )
        .await
        .unwrap();
    let page = Blobs::page_key(org, bot.id, "https://acme.example.org/faq");
    blobs
        .put(&page, "<html>FAQ</html>".as_bytes().to_vec().into())
        .await
        .unwrap();
}
