//! The conformance suite: one scenario per behaviour, run against every backend
//! through [`conformance_tests!`](crate::conformance_tests). A fresh, migrated,
//! empty store is handed to each scenario.

use std::sync::Arc;

use steward_domain::*;

use crate::*;

mod accounts;
mod channels;
mod feedback;
mod knowledge;
mod memory;
mod messages;
mod ops;
mod patterns;
mod people;
mod queue;
mod skills;
mod sso;
mod tools;

pub use accounts::*;
use channels::new_channel;
pub use channels::*;
pub use feedback::*;
pub use knowledge::*;
pub use memory::*;
pub use messages::*;
pub use ops::*;
pub use patterns::*;
pub use people::*;
pub use queue::*;
pub use skills::*;
pub use sso::*;
pub use tools::*;

/// Generates one `#[tokio::test]` per scenario. `$factory` is an async fn
/// returning `Option<(Arc<dyn Store>, Guard)>`; `None` skips (the backend is not
/// configured), and the guard is dropped when the test ends.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:path) => {
        $crate::conformance_tests!(@each $factory;
            organizations_are_created_with_their_owner,
            emails_are_unique_across_organizations,
            another_organizations_rows_are_not_found,
            chatbots_are_created_listed_patched_and_deleted,
            members_change_roles_but_the_last_owner_stays,
            passwords_are_replaced_within_their_org_and_sign_out_older_tokens,
            a_signed_out_session_stays_signed_out_until_its_token_expires,
            api_keys_are_found_by_hash_until_revoked,
            integrations_are_enabled_per_organization,
            messages_open_conversations_and_count_usage,
            history_pages_are_newest_first_without_gaps_or_overlap,
            history_is_filtered_by_time_range,
            a_message_thread_holds_its_neighbours_in_order,
            conversations_are_listed_newest_first_filtered_and_paged,
            the_text_filter_finds_words_and_word_beginnings_however_many_messages_hold_them,
            activity_counts_days_people_replies_and_chatbots,
            admin_actions_write_the_audit_log,
            idempotency_keys_start_replay_and_refuse_other_requests,
            idempotency_keys_are_claimed_once_under_concurrency,
            keyed_writes_are_fenced_by_their_claim,
            text_round_trips_exactly,
            jobs_are_claimed_leased_and_completed_once,
            claims_follow_priority_time_and_kind,
            dedupe_keys_enqueue_a_job_once,
            many_jobs_enqueue_at_once_in_their_order_and_once_per_key,
            completions_ride_on_the_next_claim,
            failed_attempts_retry_with_backoff_then_die,
            jobs_sharing_an_ordering_key_run_one_at_a_time_in_order,
            expired_leases_are_requeued_and_the_old_worker_loses_the_job,
            released_jobs_do_not_count_an_attempt,
            dead_jobs_are_retried_or_discarded_by_their_org_only,
            queue_stats_and_pruning,
            concurrent_claims_hand_each_job_to_one_worker,
            one_holder_leads_at_a_time_and_a_dead_leader_is_replaced,
            a_message_and_the_job_it_causes_are_stored_together,
            messages_that_come_at_once_are_each_stored_and_counted_once,
            a_conversation_reads_back_its_latest_turns_in_order,
            messages_after_a_position_and_live_events_reach_subscribers,
            channels_are_created_listed_found_and_deleted_within_their_org,
            each_external_user_has_one_conversation_per_channel,
            a_first_message_starts_its_senders_conversation_once,
            channel_health_counts_errors_in_a_window,
            delivered_parts_are_recorded_once_per_org,
            channel_secrets_are_replaced_only_if_unchanged,
            a_message_checked_with_a_channels_secrets_is_stored_only_while_it_has_them,
            documents_are_queued_ingested_listed_and_deleted,
            documents_added_together_are_all_stored_or_none,
            search_finds_stemmed_words_ranks_and_cites,
            search_ranks_a_rare_word_above_a_common_one_among_many_passages,
            reingesting_replaces_chunks_atomically,
            knowledge_stays_within_its_org_and_chatbot,
            crawls_keep_their_progress_and_state_and_chain_their_steps,
            vector_search_finds_the_nearest_passages_of_its_scope_only,
            vectors_are_found_the_same_before_while_and_after_they_are_indexed,
            backup_runs_report_the_latest_success_and_failure,
            expired_idempotency_keys_are_pruned,
            schema_version_table_sizes_and_whether_data_is_held,
            activity_counts_people_messages_replies_and_audit_per_org,
            tool_calls_are_journaled_once_and_finished_once,
            tool_servers_are_connected_listed_and_removed_within_their_org,
            conversations_are_handed_to_a_person_and_back_within_their_org,
            leads_are_recorded_once_per_call_and_announced_once,
            people_are_made_by_their_messages_and_kept_apart_per_org,
            a_handle_gets_one_person_however_many_write_at_once,
            linking_a_handle_merges_the_person_who_had_it,
            people_merge_within_their_org_only,
            people_are_listed_newest_first_searched_and_paged,
            a_reply_has_one_rating_per_person_which_a_second_replaces,
            skills_keep_their_versions_and_are_deleted_for_good_within_their_org,
            activations_count_once_per_call_with_the_ratings_of_their_replies,
            skills_assigned_to_people_or_roles_are_offered_to_them_only,
            memory_is_kept_once_per_message_bounded_and_within_its_org,
            memory_moves_with_a_merge_and_goes_when_turned_off,
            a_person_is_erased_for_good_and_everyone_else_kept,
            an_erasure_request_is_audited_with_its_job_within_its_org,
            conversations_past_their_retention_are_deleted_in_organizations_that_keep_them_for_a_time,
            patterns_are_counted_once_per_message_and_person_at_every_level,
            an_organization_keeps_its_own_taxonomy,
            single_sign_on_is_set_per_organization_under_a_slug_of_its_own,
            a_sign_in_state_is_taken_once,
            a_provider_identity_finds_links_or_makes_a_member_of_its_own_organization,
        );
    };
    (@each $factory:path; $($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let Some((store, _guard)) = $factory().await else {
                eprintln!("skipped: backend not configured");
                return;
            };
            $crate::conformance::$name(store).await;
        }
    )*};
}

type S = Arc<dyn Store>;

fn new_user(email: &str, role: Role) -> NewUser {
    NewUser {
        email: Email::parse("email", email).unwrap(),
        name: Some(PersonName::parse("name", "Test Person").unwrap()),
        role,
        password_hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        must_change_password: false,
    }
}

async fn org(store: &S, name: &str) -> (TenantScope, User) {
    let (org, owner) = store
        .create_organization(
            NewOrganization {
                name: OrganizationName::parse("name", name).unwrap(),
                tier: Tier::Free,
            },
            new_user(
                &format!("owner@{}.example.org", name.to_lowercase()),
                Role::Owner,
            ),
        )
        .await
        .unwrap();
    let principal = Principal::verified(org.id, Actor::User(owner.id), Role::Owner);
    (principal.scope(), owner)
}

fn new_chatbot(name: &str) -> NewChatbot {
    NewChatbot {
        name: ChatbotName::parse("name", name).unwrap(),
        system_prompt: SystemPrompt::parse("system_prompt", "Be brief.").unwrap(),
        temperature: Temperature::parse("temperature", 0.7).unwrap(),
        model: None,
        status: ChatbotStatus::Active,
    }
}

fn user_message(
    chatbot: ChatbotId,
    conversation: Option<ConversationId>,
    text: &str,
) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        chatbot_id: chatbot,
        conversation: match conversation {
            Some(id) => ConversationChoice::Existing(id),
            None => ConversationChoice::Start(ConversationId::new()),
        },
        role: MessageRole::User,
        text: MessageText::parse("text", text).unwrap(),
        channel: "api".into(),
        external_id: None,
        answers: None,
        channel_id: None,
        channel_secrets: None,
        meta: None,
        tokens: 0,
        then: Vec::new(),
        sender: None,
        forwarded: false,
        conversation_key: None,
    }
}

fn assert_not_found<T: std::fmt::Debug>(result: StoreResult<T>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::NotFound)),
        "{what}: expected NotFound, got {result:?}"
    );
}

fn assert_conflict<T: std::fmt::Debug>(result: StoreResult<T>, expected: &str) {
    match result {
        Err(StoreError::Conflict(conflict)) => assert_eq!(conflict.code(), expected),
        other => panic!("expected Conflict({expected}), got {other:?}"),
    }
}
