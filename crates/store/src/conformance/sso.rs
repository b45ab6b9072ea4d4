//! Single sign-on: settings kept per organization under a unique slug, a
//! sign-in's state taken once, and a provider identity that finds, links or
//! makes a member of its own organization only.

use chrono::Duration;
use steward_domain::*;

use super::*;

fn own_provider(issuer: &str, secret: &[u8]) -> Option<SsoProvider> {
    Some(SsoProvider {
        issuer: issuer.into(),
        client_id: "steward".into(),
        sealed_secret: secret.to_vec(),
    })
}

fn sso(scope: &TenantScope, slug: &str) -> SsoSettings {
    SsoSettings {
        org_id: scope.org_id(),
        slug: slug.into(),
        provider: own_provider("https://id.acme.example", b"sealed-1"),
        allowed_domains: vec!["acme.example.org".into()],
        default_role: Role::Member,
        required: false,
        updated_at: now(),
    }
}

fn identity(subject: &str, email: &str) -> SsoIdentity {
    SsoIdentity {
        issuer: "https://id.acme.example".into(),
        subject: subject.into(),
        email: Email::parse("email", email).unwrap(),
    }
}

pub async fn single_sign_on_is_set_per_organization_under_a_slug_of_its_own(store: S) {
    let (acme, _) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    assert_eq!(store.sso_settings(&acme).await.unwrap(), None);
    let set = store
        .set_sso_settings(&acme, sso(&acme, "acme"))
        .await
        .unwrap();
    assert_eq!(set.slug, "acme");
    assert_eq!(
        store.sso_settings(&acme).await.unwrap().as_ref(),
        Some(&set)
    );
    assert_eq!(store.sso_settings(&globex).await.unwrap(), None);
    assert_eq!(
        store
            .find_sso_by_slug("acme")
            .await
            .unwrap()
            .map(|s| s.org_id),
        Some(acme.org_id())
    );
    assert_eq!(
        store.set_sso_settings(&globex, sso(&globex, "acme")).await,
        Err(StoreError::Conflict(Conflict::SlugTaken))
    );

    // Replaced whole: the platform's provider, other rules.
    let platform = SsoSettings {
        provider: None,
        required: true,
        default_role: Role::Advisor,
        ..sso(&acme, "acme-corp")
    };
    let set = store.set_sso_settings(&acme, platform).await.unwrap();
    assert_eq!(
        (set.provider, set.required, set.default_role),
        (None, true, Role::Advisor)
    );
    assert_eq!(store.find_sso_by_slug("acme").await.unwrap(), None);
    assert!(store.sealed_sso_secrets().await.unwrap().is_empty());

    // The secret is replaced only if it is still what the caller read.
    store
        .set_sso_settings(&acme, sso(&acme, "acme"))
        .await
        .unwrap();
    let sealed = store.sealed_sso_secrets().await.unwrap();
    assert_eq!(sealed, vec![(acme.org_id(), b"sealed-1".to_vec())]);
    assert!(
        !store
            .replace_sso_secret(acme.org_id(), b"stale", b"sealed-2")
            .await
            .unwrap()
    );
    assert!(
        store
            .replace_sso_secret(acme.org_id(), b"sealed-1", b"sealed-2")
            .await
            .unwrap()
    );
    let now_sealed = store
        .sso_settings(&acme)
        .await
        .unwrap()
        .unwrap()
        .provider
        .unwrap();
    assert_eq!(now_sealed.sealed_secret, b"sealed-2");

    let actions: Vec<String> = store
        .list_audit(&acme, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "sso.configured").count(), 3);

    store.remove_sso_settings(&acme).await.unwrap();
    assert_eq!(
        store.remove_sso_settings(&acme).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.find_sso_by_slug("acme").await.unwrap(), None);
    store
        .set_sso_settings(&globex, sso(&globex, "acme"))
        .await
        .unwrap();
}

pub async fn a_sign_in_state_is_taken_once(store: S) {
    let (acme, _) = org(&store, "Acme").await;
    let attempt = |state: &str, expires_at| SsoAttempt {
        state_hash: state.into(),
        org_id: acme.org_id(),
        browser_hash: "browser".into(),
        nonce: "nonce".into(),
        code_verifier: "verifier".into(),
        wants_token: true,
        next: Some("/conversations".into()),
        expires_at,
    };
    let live = attempt("live", now() + Duration::minutes(10));
    store.begin_sso_attempt(&live).await.unwrap();
    store
        .begin_sso_attempt(&attempt("stale", now() - Duration::seconds(1)))
        .await
        .unwrap();
    store
        .begin_sso_attempt(&attempt("later", now() + Duration::minutes(10)))
        .await
        .unwrap();
    assert_eq!(store.take_sso_attempt("live").await.unwrap(), Some(live));
    assert_eq!(store.take_sso_attempt("live").await.unwrap(), None);
    assert_eq!(
        store.take_sso_attempt("stale").await.unwrap(),
        None,
        "expired ones are forgotten"
    );
    assert!(store.take_sso_attempt("later").await.unwrap().is_some());
}

pub async fn a_provider_identity_finds_links_or_makes_a_member_of_its_own_organization(store: S) {
    let (acme, owner) = org(&store, "Acme").await;
    let (globex, _) = org(&store, "Globex").await;
    let member = |m: SsoMember| m.user();

    // An existing member by address, then by the identity alone.
    let linked = store
        .sso_member(&acme, &identity("sub-owner", &owner.email), None)
        .await
        .unwrap();
    assert!(
        matches!(&linked, SsoMember::Linked(u) if u.id == owner.id),
        "{linked:?}"
    );
    let renamed = identity("sub-owner", "owner.renamed@acme.example.org");
    let known = store.sso_member(&acme, &renamed, None).await.unwrap();
    assert!(
        matches!(&known, SsoMember::Known(u) if u.id == owner.id),
        "{known:?}"
    );

    // Nobody to find and nothing to make; then made, with the role given.
    let ada = identity("sub-ada", "ada@acme.example.org");
    assert_eq!(
        store.sso_member(&acme, &ada, None).await,
        Err(StoreError::NotFound)
    );
    let created = store
        .sso_member(
            &acme,
            &ada,
            Some(new_user("ada@acme.example.org", Role::Advisor)),
        )
        .await
        .unwrap();
    assert!(matches!(created, SsoMember::Created(_)));
    let ada_user = member(created);
    assert_eq!(
        (ada_user.org_id, ada_user.role),
        (acme.org_id(), Role::Advisor)
    );
    let again = store.sso_member(&acme, &ada, None).await.unwrap();
    assert_eq!(member(again).id, ada_user.id);

    // Another organization's member, by identity or by address.
    assert_eq!(
        store.sso_member(&globex, &ada, None).await,
        Err(StoreError::Conflict(Conflict::OtherOrganization))
    );
    let globex_owner = identity("sub-globex", "owner@globex.example.org");
    assert_eq!(
        store
            .sso_member(
                &acme,
                &globex_owner,
                Some(new_user("owner@globex.example.org", Role::Member))
            )
            .await,
        Err(StoreError::Conflict(Conflict::OtherOrganization))
    );

    // A second identity of the same issuer claiming a linked member's address.
    let impostor = identity("sub-impostor", "ada@acme.example.org");
    assert_eq!(
        store.sso_member(&acme, &impostor, None).await,
        Err(StoreError::Conflict(Conflict::OtherIdentity))
    );

    let actions: Vec<String> = store
        .list_audit(&acme, None, 20)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        actions.contains(&"member.sso_linked".to_owned()),
        "{actions:?}"
    );
    assert_eq!(actions.iter().filter(|a| *a == "member.added").count(), 1);
    assert_eq!(store.list_members(&acme).await.unwrap().len(), 2);

    // Removing the member removes the identity: signing in again makes a new one.
    store.remove_member(&acme, ada_user.id).await.unwrap();
    assert_eq!(
        store.sso_member(&acme, &ada, None).await,
        Err(StoreError::NotFound)
    );
}
