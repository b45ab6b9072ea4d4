// figment::Jail closures return figment::Error, which is large; that is its API.
#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;

use figment::Jail;

use super::*;
use crate::docs::lookup;

/// Keys whose value is a table of the operator's choosing count as one key.
const MAP_KEYS: &[&str] = &["jobs.kind_concurrency"];

fn leaves(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(table) if !MAP_KEYS.contains(&prefix) => {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(value, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let mut full = Config::default();
    full.database.url = Some(Secret::new("sqlite://x"));
    full.auth.jwt_secret = Some(Secret::new("s"));
    full.secrets.master_key = Some(Secret::new("k"));
    full.secrets.previous_master_key = Some(Secret::new("p"));
    full.http.public_url = Some("https://steward.example.org".into());
    full.http.metrics_token = Some(Secret::new("m"));
    full.redis.url = Some(Secret::new("redis://localhost"));
    full.storage.url = Some("file:///var/lib/steward/blobs".into());
    full.backup.dir = Some("/var/lib/steward/backups".into());
    full.backup.s3_url = Some("s3://steward-backups/nightly".into());
    full.backup.encryption_key = Some(Secret::new("b"));
    full.backup.previous_encryption_keys = vec![Secret::new("o")];
    full.storage.s3_endpoint = Some("http://minio:9000".into());
    full.storage.s3_region = Some("eu-west-1".into());
    full.storage.s3_access_key_id = Some("steward".into());
    full.storage.s3_secret_access_key = Some(Secret::new("s3-secret"));
    full.embeddings.base_url = Some("http://localhost:11434/v1".into());
    full.embeddings.api_key = Some(Secret::new("k"));
    full.jobs.org_share = Some(4);
    full.jobs.reply_reserve = Some(2);
    full.mail.password = Some(Secret::new("smtp-secret"));
    full.auth.sso_issuer = Some("https://login.example.org".into());
    full.auth.sso_client_id = Some("steward".into());
    full.auth.sso_client_secret = Some(Secret::new("sso-secret"));
    let provider = ProviderConfig {
        kind: ProviderKind::Openai,
        base_url: Some("http://localhost:11434/v1".into()),
        api_key: Some(Secret::new("k")),
        model: "m".into(),
        timeout_secs: 5,
    };
    full.llm.primary = Some(provider.clone());
    full.llm.fallback = Some(provider.clone());
    full.llm.background = Some(provider);
    let mut keys = BTreeSet::new();
    leaves(&toml::Value::try_from(full).unwrap(), "", &mut keys);
    let documented: BTreeSet<String> = KEYS.iter().map(|k| k.key.to_owned()).collect();
    assert_eq!(keys, documented);
}

#[test]
fn the_example_is_valid_configuration_with_the_defaults() {
    let example = example();
    let parsed: Config = toml::from_str(&example).expect("example parses as a config file");
    assert_eq!(parsed.listen, "127.0.0.1:8080");
    assert!(example.contains("# env: STEWARD_DATABASE__URL"));
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    assert_eq!(
        lookup(&defaults, "tiers.pro.messages_per_month")
            .unwrap()
            .as_integer(),
        Some(20_000)
    );
}

#[test]
fn precedence_is_defaults_file_environment_flags() {
    Jail::expect_with(|jail| {
        jail.create_file("steward.toml", "listen = \"127.0.0.1:9000\"\n[database]\nurl = \"sqlite://file.db\"\nmax_connections = 3\n")?;
        jail.set_env("STEWARD_DATABASE__URL", "postgres://env@localhost/db");
        jail.set_env("STEWARD_AUTH__REGISTRATION", "closed");
        jail.set_env("STEWARD_TEST_POSTGRES_URL", "not configuration, ignored");
        let file = Some(Path::new("steward.toml"));
        let config = Config::load(file, &Overrides::default()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000", "file over default");
        assert_eq!(config.database.max_connections, 3);
        assert_eq!(
            config.database_url(),
            "postgres://env@localhost/db",
            "environment over file"
        );
        assert_eq!(config.auth.registration, Registration::Closed);

        let flags = Overrides {
            listen: Some("0.0.0.0:7000".into()),
            data_dir: Some("/srv/steward".into()),
        };
        let config = Config::load(file, &flags).unwrap();
        assert_eq!(config.listen, "0.0.0.0:7000", "flags over everything");
        assert_eq!(config.data_dir, PathBuf::from("/srv/steward"));
        Ok(())
    });
}

#[test]
fn the_default_database_is_sqlite_in_the_data_dir() {
    Jail::expect_with(|jail| {
        jail.set_env("STEWARD_DATA_DIR", "/var/lib/steward");
        let config = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(
            config.database_url(),
            "sqlite:///var/lib/steward/steward.db"
        );
        Ok(())
    });
}

#[test]
fn bad_configuration_is_refused_with_the_key_named() {
    Jail::expect_with(|jail| {
        let missing =
            Config::load(Some(Path::new("nope.toml")), &Overrides::default()).unwrap_err();
        assert!(missing.to_string().contains("nope.toml"));

        jail.create_file("typo.toml", "[http]\nbody_limit = 5\n")?;
        let typo = Config::load(Some(Path::new("typo.toml")), &Overrides::default()).unwrap_err();
        assert!(typo.to_string().contains("body_limit"), "{typo}");

        let bad_listen = Config::load(
            None,
            &Overrides {
                listen: Some("nowhere".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(bad_listen.to_string().contains("listen"), "{bad_listen}");

        // A plain connection to a mail server elsewhere would send its password in clear.
        jail.create_file(
            "mail.toml",
            "[mail]\nsmtp_host = \"smtp.example.org\"\nfrom = \"steward@example.org\"\ntls = false\n",
        )?;
        let plain = Config::load(Some(Path::new("mail.toml")), &Overrides::default()).unwrap_err();
        assert!(plain.to_string().contains("mail"), "{plain}");

        // The platform's single sign-on provider is all three keys or none.
        jail.create_file(
            "sso.toml",
            "[auth]\nsso_issuer = \"https://login.example.org\"\n",
        )?;
        let half = Config::load(Some(Path::new("sso.toml")), &Overrides::default()).unwrap_err();
        assert!(half.to_string().contains("auth.sso_client_id"), "{half}");

        jail.set_env("STEWARD_DATABASE__URL", "mysql://x");
        assert!(
            Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string()
                .contains("database.url")
        );
        Ok(())
    });
}

#[test]
fn secrets_are_generated_once_with_owner_only_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let first = ensure_secrets(&mut config).unwrap();
    assert_eq!(
        first.generated,
        [
            "auth.jwt_secret",
            "secrets.master_key",
            "backup.encryption_key"
        ]
    );
    let jwt = config.auth.jwt_secret.clone().unwrap();
    let file = dir.path().join("secrets/jwt_secret");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("secrets"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(secrets::master_key_bytes(&config).unwrap().len(), 32);

    let mut again = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let next = ensure_secrets(&mut again).unwrap();
    assert_eq!(
        next.read,
        [
            "auth.jwt_secret",
            "secrets.master_key",
            "backup.encryption_key"
        ]
    );
    assert_eq!(again.backup.encryption_key, config.backup.encryption_key);
    assert_ne!(
        again.backup.encryption_key, again.secrets.master_key,
        "backups have a key of their own"
    );
    assert!(next.generated.is_empty());
    assert_eq!(
        again.auth.jwt_secret,
        Some(jwt),
        "the same secret on the next start"
    );
    assert_eq!(format!("{:?}", again.auth.jwt_secret), "Some(Secret(***))");
}

#[test]
fn processes_starting_together_generate_one_set_of_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let data_dir = dir.path().to_owned();
            std::thread::spawn(move || {
                let mut config = Config {
                    data_dir,
                    ..Config::default()
                };
                ensure_secrets(&mut config).unwrap();
                (
                    config.auth.jwt_secret.unwrap(),
                    config.secrets.master_key.unwrap(),
                    config.backup.encryption_key.unwrap(),
                )
            })
        })
        .collect();
    let kept: Vec<_> = starts.into_iter().map(|s| s.join().unwrap()).collect();
    assert!(
        kept.iter().all(|k| *k == kept[0]),
        "every start has the same secrets"
    );
    let files: Vec<String> = std::fs::read_dir(dir.path().join("secrets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 3, "no candidates left behind: {files:?}");
}

#[test]
fn production_refuses_to_start_without_secrets_and_names_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        env: Environment::Production,
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    let err = ensure_secrets(&mut config).unwrap_err().to_string();
    assert!(
        err.contains("auth.jwt_secret") && err.contains("STEWARD_AUTH__JWT_SECRET"),
        "{err}"
    );
    assert!(
        !dir.path().join("secrets").exists(),
        "nothing generated in production"
    );

    config.auth.jwt_secret = Some(Secret::new("x".repeat(40)));
    let err = ensure_secrets(&mut config).unwrap_err().to_string();
    assert!(err.contains("secrets.master_key"), "{err}");

    let key = || Some(Secret::new("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="));
    config.secrets.master_key = key();
    let err = ensure_secrets(&mut config).unwrap_err().to_string();
    assert!(
        err.contains("backup.encryption_key") && err.contains("STEWARD_BACKUP__ENCRYPTION_KEY"),
        "{err}"
    );
    config.backup.encryption_key = key();
    config.secrets.master_key = Some(Secret::new("too short"));
    assert!(
        ensure_secrets(&mut config)
            .unwrap_err()
            .to_string()
            .contains("base64")
    );
    config.secrets.master_key = key();
    config.backup.encryption_key = key();
    config.backup.previous_encryption_keys = vec![Secret::new("not base64!")];
    let err = ensure_secrets(&mut config).unwrap_err().to_string();
    assert!(err.contains("backup.previous_encryption_keys"), "{err}");
    config.backup.previous_encryption_keys = Vec::new();
    ensure_secrets(&mut config).unwrap();
}

#[test]
fn the_configuration_reference_in_docs_is_current() {
    let reference = include_str!("../../../docs/configuration.md");
    assert!(
        reference.contains(&example()),
        "docs/configuration.md is stale: run scripts/update-config-reference"
    );
}

#[test]
fn every_section_can_be_set_from_the_environment() {
    Jail::expect_with(|jail| {
        jail.set_env("STEWARD_JOBS__LEASE_SECS", "45");
        jail.set_env("STEWARD_SCHEDULER__MAINTENANCE_CRON", "* * * * * *");
        jail.set_env("STEWARD_LOG__FORMAT", "json");
        jail.set_env(
            "STEWARD_HTTP__CORS_ALLOWED_ORIGINS",
            "[\"https://app.example.org\"]",
        );
        jail.set_env("STEWARD_TIERS__PRO__MESSAGES_PER_MONTH", "7");
        let config = Config::load(None, &Overrides::default()).unwrap();
        assert_eq!(config.jobs.lease_secs, 45);
        assert_eq!(config.scheduler.maintenance_cron, "* * * * * *");
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(
            config.http.cors_allowed_origins,
            ["https://app.example.org"]
        );
        assert_eq!(config.tiers.pro.messages_per_month, 7);
        Ok(())
    });
}

#[test]
fn conventional_api_keys_configure_a_provider_when_none_is_set() {
    Jail::expect_with(|jail| {
        jail.set_env("OPENAI_API_KEY", "sk-openai");
        let config = Config::load(None, &Overrides::default()).unwrap();
        let primary = config.llm.primary.unwrap();
        assert_eq!(
            (primary.kind, primary.base_url()),
            (ProviderKind::Openai, "https://api.openai.com/v1")
        );
        assert_eq!(primary.api_key.unwrap().expose(), "sk-openai");

        jail.set_env("ANTHROPIC_API_KEY", "sk-ant");
        assert_eq!(
            Config::load(None, &Overrides::default())
                .unwrap()
                .llm
                .primary
                .unwrap()
                .kind,
            ProviderKind::Anthropic
        );

        jail.set_env("STEWARD_LLM__PRIMARY__KIND", "openai");
        jail.set_env("STEWARD_LLM__PRIMARY__MODEL", "llama3.1");
        jail.set_env(
            "STEWARD_LLM__PRIMARY__BASE_URL",
            "http://localhost:11434/v1",
        );
        let explicit = Config::load(None, &Overrides::default())
            .unwrap()
            .llm
            .primary
            .unwrap();
        assert_eq!(
            (explicit.model.as_str(), explicit.api_key),
            ("llama3.1", None),
            "explicit configuration wins"
        );

        jail.set_env("STEWARD_LLM__FALLBACK__KIND", "anthropic");
        jail.set_env("STEWARD_LLM__FALLBACK__MODEL", "claude-haiku-4-5");
        let err = Config::load(None, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("llm.fallback") && err.contains("api_key"),
            "{err}"
        );
        Ok(())
    });
}

#[test]
fn the_operators_mcp_servers_are_read_checked_and_their_headers_taken_from_the_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "tools.toml",
            "[[tools.servers]]\nname = \"crm\"\nurl = \"http://crm.internal:8080/mcp\"\nheaders = { authorization = \"${CRM_TOKEN}\", x-team = \"sales\" }\n",
        )?;
        let config = Config::load(Some(Path::new("tools.toml")), &Overrides::default()).unwrap();
        let crm = &config.tools.servers[0];
        assert_eq!((crm.name.as_str(), crm.timeout_secs), ("crm", 15));
        let missing = crm.resolved_headers().unwrap_err();
        assert!(missing.contains("${CRM_TOKEN}"), "{missing}");
        jail.set_env("CRM_TOKEN", "Bearer s3cret");
        assert_eq!(
            crm.resolved_headers().unwrap(),
            [
                ("authorization".to_owned(), "Bearer s3cret".to_owned()),
                ("x-team".to_owned(), "sales".to_owned())
            ]
        );

        for bad in [
            "[[tools.servers]]\nname = \"CRM\"\nurl = \"http://crm/mcp\"\n",
            "[[tools.servers]]\nname = \"crm\"\nurl = \"ftp://crm/mcp\"\n",
            "[[tools.servers]]\nname = \"crm\"\nurl = \"http://a/mcp\"\n[[tools.servers]]\nname = \"crm\"\nurl = \"http://b/mcp\"\n",
            "[[tools.servers]]\nname = \"crm\"\nurl = \"http://crm/mcp\"\nsecret = 1\n",
        ] {
            jail.create_file("bad.toml", bad)?;
            let error =
                Config::load(Some(Path::new("bad.toml")), &Overrides::default()).unwrap_err();
            assert!(
                error.to_string().contains("tools.servers") || error.to_string().contains("secret"),
                "{bad}: {error}"
            );
        }
        Ok(())
    });
}
