//! Backups end to end on both stores: a round trip gives back exactly the
//! rows and blobs there were; damaged backups are refused before anything is
//! written; a full disk fails a backup and keeps the earlier ones; retention;
//! and the S3 copy. PostgreSQL runs when `STEWARD_TEST_POSTGRES_URL` is set,
//! with `pg_dump`/`pg_restore` from `STEWARD_TEST_PG_BIN` (else PATH).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use steward_backup::{BackupError, Backups, Pick};
use steward_config::{Config, Secret, StorageConfig};
use steward_domain::*;
use steward_knowledge::Blobs;
use steward_store::*;
use steward_store_postgres::PostgresStore;
use steward_store_sqlite::SqliteStore;
use steward_testkit::digest::database_digest;
use steward_testkit::seed::seed;
use steward_testkit::{DbGuard, PostgresDatabase};

/// A migrated database with its URL.
struct Db {
    store: Arc<dyn Store>,
    url: String,
    _guard: DbGuard,
}

async fn database(backend: Backend) -> Option<Db> {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("steward.db").display());
            let store = SqliteStore::connect(&url, 2).await.unwrap();
            store.migrate().await.unwrap();
            Some(Db {
                store: Arc::new(store),
                url,
                _guard: DbGuard::Sqlite(dir),
            })
        }
        Backend::Postgres => {
            let db = PostgresDatabase::create().await?;
            let store = PostgresStore::connect(&db.url, 4).await.unwrap();
            store.migrate().await.unwrap();
            Some(Db {
                store: Arc::new(store),
                url: db.url.clone(),
                _guard: DbGuard::Postgres(db),
            })
        }
    }
}

/// Where a restore may go: a path that does not exist yet, or an empty database.
async fn empty_target(backend: Backend) -> (String, DbGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("restored.db").display());
            (url, DbGuard::Sqlite(dir))
        }
        Backend::Postgres => {
            let db = PostgresDatabase::create().await.expect("configured");
            (db.url.clone(), DbGuard::Postgres(db))
        }
    }
}

fn pg_tool(name: &str) -> String {
    match std::env::var("STEWARD_TEST_PG_BIN") {
        Ok(bin) if !bin.is_empty() => format!("{bin}/{name}"),
        _ => name.to_owned(),
    }
}

/// Backup keys for the tests: base64 of 32 bytes of 1, and of 2.
const KEY: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const NEXT_KEY: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";

fn config(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        ..Config::default()
    };
    config.backup.pg_dump = pg_tool("pg_dump");
    config.backup.pg_restore = pg_tool("pg_restore");
    config.backup.encryption_key = Some(Secret::new(KEY));
    config
}

async fn all_blobs(blobs: &Blobs) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for key in blobs.keys("").await.unwrap() {
        out.insert(key.clone(), blobs.get(&key).await.unwrap().to_vec());
    }
    out
}

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(steward_store::Backend::Sqlite).await;
            }
        )*}
        mod postgres {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if std::env::var(steward_testkit::POSTGRES_URL_ENV).is_err() {
                    eprintln!("skipped: backend not configured");
                    return;
                }
                super::$name(steward_store::Backend::Postgres).await;
            }
        )*}
    };
}

on_both_stores!(
    a_restored_backup_holds_exactly_the_rows_and_blobs_there_were,
    damaged_backups_are_refused_before_anything_is_written,
    backups_open_only_with_their_key_and_refuse_any_alteration,
    an_erased_person_stays_erased_when_an_older_backup_is_restored,
);

async fn an_erased_person_stays_erased_when_an_older_backup_is_restored(backend: Backend) {
    let source = database(backend).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    let store = source.store.as_ref();
    let (scope, bot) =
        steward_testkit::seed::organization_with_chatbot(store, "Acme", Tier::Free).await;
    let sealer = Arc::new(steward_auth::Sealer::new(&[7; 32]));
    let memory = steward_tools::memory::Memory::new(source.store.clone(), sealer.clone());
    let message = |handle, text| {
        steward_testkit::seed::telegram_message(store, &scope, bot.id, None, handle, text)
    };
    let ada_says = message("1", "I work in finance").await;
    let bo_says = message("2", "I work in sales").await;
    let (ada, bo) = (ada_says.person_id.unwrap(), bo_says.person_id.unwrap());
    for (person, said, fact) in [
        (ada, ada_says.id, "Works in finance"),
        (bo, bo_says.id, "Works in sales"),
    ] {
        memory
            .remember(
                &scope,
                person,
                said,
                Default::default(),
                &[fact.to_owned()],
                10,
            )
            .await
            .unwrap();
    }
    // Ada's sealed memory as it was, to try every key on later.
    let ada_sealed = store.memory(&scope, ada).await.unwrap();
    let backups = Backups::from_config(&config(data.path())).unwrap();
    // An export of Ada's data (memory in clear) is never copied into a backup.
    let export = format!(
        "{}{}/export.zip",
        steward_knowledge::EXPORTS_PREFIX,
        scope.org_id()
    );
    blobs
        .put(&export, b"Ada's data".to_vec().into())
        .await
        .unwrap();
    let before = backups.create(store, &source.url, &blobs).await.unwrap();
    assert_eq!(before.blob_count, 0, "the export is left out");

    let erased = steward_backup::erase(store, &backups, &scope, ada)
        .await
        .unwrap();
    assert_eq!(
        (
            erased.keys,
            erased.facts,
            erased.messages,
            erased.conversations
        ),
        (1, 1, 1, 1)
    );
    assert!(matches!(
        store.person(&scope, ada).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.message(&scope, ada_says.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(memory.facts(&scope, ada).await.unwrap().is_empty());
    // Unreadable with every key Steward holds: no key of Ada's is left to
    // open her facts, and neither the master key nor anyone else's does.
    let every_key = store.all_person_keys().await.unwrap();
    assert_eq!(every_key.len(), 1, "only Bo's is left");
    let bos = sealer
        .open_data_key(&every_key[0].sealed, every_key[0].id.to_string().as_bytes())
        .unwrap();
    for fact in &ada_sealed {
        let context = fact.id.to_string();
        assert!(bos.open(&fact.sealed, context.as_bytes()).is_err());
        assert!(sealer.open(&fact.sealed, context.as_bytes()).is_err());
    }

    // The backup made before the erasure, restored into a new database:
    // Ada is erased again before the restore returns; Bo is intact.
    let (target, _target_guard) = empty_target(backend).await;
    let plan = backups
        .restore(&Pick::Id(before.id.clone()), &target, None, false, |_| true)
        .await
        .unwrap();
    assert_eq!(plan.erased_again, 1);
    let restored: Arc<dyn Store> = match backend {
        Backend::Sqlite => Arc::new(SqliteStore::connect(&target, 2).await.unwrap()),
        Backend::Postgres => Arc::new(PostgresStore::connect(&target, 2).await.unwrap()),
    };
    let restored_memory = steward_tools::memory::Memory::new(restored.clone(), sealer.clone());
    assert!(matches!(
        restored.person(&scope, ada).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        restored.message(&scope, ada_says.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(restored.person_keys(&scope, ada).await.unwrap().is_empty());
    assert!(restored.memory(&scope, ada).await.unwrap().is_empty());
    assert_eq!(restored.all_person_keys().await.unwrap().len(), 1);
    assert_eq!(
        restored.message(&scope, bo_says.id).await.unwrap().text,
        "I work in sales"
    );
    let bos_facts = restored_memory.facts(&scope, bo).await.unwrap();
    assert_eq!(bos_facts[0].text, "Works in sales");
    assert_eq!(
        restored.erasures().await.unwrap().len(),
        1,
        "the restored ledger holds it too"
    );
    restored.close().await;
}

async fn a_restored_backup_holds_exactly_the_rows_and_blobs_there_were(backend: Backend) {
    let source = database(backend).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    seed(source.store.as_ref(), &blobs, 0).await;
    let rows_before = database_digest(&source.url).await;
    let blobs_before = all_blobs(&blobs).await;
    assert!(rows_before["messages"].starts_with("2:"), "{rows_before:?}");

    let backups = Backups::from_config(&config(data.path())).unwrap();
    let manifest = backups
        .create(source.store.as_ref(), &source.url, &blobs)
        .await
        .unwrap();
    assert_eq!(manifest.blob_count, 2);
    assert_eq!(
        manifest.schema_version,
        source.store.latest_schema_version()
    );
    let status = source.store.backup_status().await.unwrap();
    assert_eq!(status.last_success.unwrap().backup_id, manifest.id);

    let verified = backups
        .verify(&Pick::Latest, &source.url, None)
        .await
        .unwrap();
    let organizations = verified
        .tables
        .iter()
        .find(|t| t.table == "organizations")
        .unwrap();
    assert_eq!(organizations.rows, 1);
    assert_eq!(verified.blobs.count, 2);

    let (target, _target_guard) = empty_target(backend).await;
    let restored_blobs_dir = tempfile::tempdir().unwrap();
    let restored_blobs = Blobs::local(restored_blobs_dir.path()).unwrap();
    let mut asked = false;
    backups
        .restore(
            &Pick::Id(manifest.id.clone()),
            &target,
            Some(&restored_blobs),
            false,
            |plan| {
                asked = true;
                assert!(!plan.target_holds_data);
                true
            },
        )
        .await
        .unwrap();
    assert!(asked, "the operator is asked");
    assert_eq!(database_digest(&target).await, rows_before);
    assert_eq!(all_blobs(&restored_blobs).await, blobs_before);

    // The target now holds data: refused without --force, and declining
    // the confirmation changes nothing.
    let again = backups
        .restore(&Pick::Latest, &target, None, false, |_| true)
        .await;
    assert!(matches!(again, Err(BackupError::Refused(_))), "{again:?}");
    let declined = backups
        .restore(&Pick::Latest, &target, None, true, |plan| {
            assert!(plan.target_holds_data);
            false
        })
        .await;
    assert!(
        matches!(declined, Err(BackupError::Cancelled)),
        "{declined:?}"
    );
    backups
        .restore(&Pick::Latest, &target, None, true, |_| true)
        .await
        .unwrap();
    assert_eq!(database_digest(&target).await, rows_before);

    // A backup restores into the backend it was made from only.
    let other = match backend {
        Backend::Sqlite => "postgres://steward@127.0.0.1:1/steward".to_owned(),
        Backend::Postgres => format!("sqlite://{}/other.db", data.path().display()),
    };
    let crossed = backups
        .restore(&Pick::Latest, &other, None, false, |_| true)
        .await;
    assert!(
        matches!(crossed, Err(BackupError::Mismatch(_))),
        "{crossed:?}"
    );
}

/// Copies backup `id` to a new id in the same folder and damages one file.
fn damaged_copy(dir: &Path, id: &str, new_id: &str, file: &str, damage: fn(&mut Vec<u8>)) {
    let from = dir.join(id);
    let to = dir.join(new_id);
    std::fs::create_dir(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        let mut bytes = std::fs::read(entry.path()).unwrap();
        if entry.file_name() == file {
            damage(&mut bytes);
        }
        std::fs::write(to.join(entry.file_name()), bytes).unwrap();
    }
}

async fn damaged_backups_are_refused_before_anything_is_written(backend: Backend) {
    let source = database(backend).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    seed(source.store.as_ref(), &blobs, 0).await;
    let backups = Backups::from_config(&config(data.path())).unwrap();
    let manifest = backups
        .create(source.store.as_ref(), &source.url, &blobs)
        .await
        .unwrap();
    let database_file = &manifest.files[0].name;
    let dir = backups.dir().to_owned();
    let flip = |bytes: &mut Vec<u8>| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
    };
    let truncate = |bytes: &mut Vec<u8>| bytes.truncate(bytes.len() - 100);
    type Damage = fn(&mut Vec<u8>);
    let cases: [(&str, &str, Damage); 4] = [
        ("20200101T000000.000Z", database_file.as_str(), flip),
        ("20200101T000001.000Z", "blobs.tar.gz.enc", truncate),
        ("20200101T000002.000Z", "manifest.json", flip),
        ("20200101T000003.000Z", database_file.as_str(), truncate),
    ];
    for (id, file, damage) in cases {
        damaged_copy(&dir, &manifest.id, id, file, damage);
        let pick = Pick::Id(id.into());
        let verified = backups.verify(&pick, &source.url, None).await;
        assert!(
            matches!(verified, Err(BackupError::Corrupt(_))),
            "{file} damaged: verify said {verified:?}"
        );
        let (target, _guard) = empty_target(backend).await;
        let restored_blobs_dir = tempfile::tempdir().unwrap();
        let restored_blobs = Blobs::local(restored_blobs_dir.path()).unwrap();
        let restored = backups
            .restore(&pick, &target, Some(&restored_blobs), true, |_| {
                panic!("a damaged backup must be refused before the operator is asked")
            })
            .await;
        assert!(
            matches!(restored, Err(BackupError::Corrupt(_))),
            "{file} damaged: restore said {restored:?}"
        );
        match backend {
            Backend::Sqlite => assert!(!Path::new(target.trim_start_matches("sqlite://")).exists()),
            Backend::Postgres => assert!(database_digest(&target).await.is_empty()),
        }
        assert!(restored_blobs.keys("").await.unwrap().is_empty());
    }
    // The sound backup is still sound.
    backups
        .verify(&Pick::Id(manifest.id), &source.url, None)
        .await
        .unwrap();
}

/// Rewrites the manifest of backup `id` (and its digest) as `change` makes it.
fn rewrite_manifest(dir: &Path, id: &str, change: impl FnOnce(&mut serde_json::Value)) {
    use sha2::Digest;
    let path = dir.join(id).join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    change(&mut manifest);
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    let digest = hex::encode(sha2::Sha256::digest(&json));
    std::fs::write(&path, &json).unwrap();
    std::fs::write(
        dir.join(id).join("manifest.json.sha256"),
        format!("{digest}  manifest.json\n"),
    )
    .unwrap();
}

/// Whether a restore into a new target was refused with nothing written.
async fn refused_before_writing(backups: &Backups, backend: Backend, pick: &Pick) -> BackupError {
    let (target, _guard) = empty_target(backend).await;
    let restored_blobs_dir = tempfile::tempdir().unwrap();
    let restored_blobs = Blobs::local(restored_blobs_dir.path()).unwrap();
    let refused = backups
        .restore(pick, &target, Some(&restored_blobs), true, |_| {
            panic!("a backup that does not open must be refused before the operator is asked")
        })
        .await
        .expect_err("refused");
    match backend {
        Backend::Sqlite => assert!(!Path::new(target.trim_start_matches("sqlite://")).exists()),
        Backend::Postgres => assert!(database_digest(&target).await.is_empty()),
    }
    assert!(restored_blobs.keys("").await.unwrap().is_empty());
    refused
}

async fn backups_open_only_with_their_key_and_refuse_any_alteration(backend: Backend) {
    let source = database(backend).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    seed(source.store.as_ref(), &blobs, 0).await;
    let rows_before = database_digest(&source.url).await;
    let backups = Backups::from_config(&config(data.path())).unwrap();
    let old = backups
        .create(source.store.as_ref(), &source.url, &blobs)
        .await
        .unwrap();
    let dir = backups.dir().to_owned();
    // Every file is sealed under the backup key, named in the manifest.
    for file in &old.files {
        let sealed = std::fs::read(dir.join(&old.id).join(&file.name)).unwrap();
        assert_eq!(
            steward_backup::crypt::key_id_of(sealed.as_slice()).unwrap(),
            old.key_id,
            "{}",
            file.name
        );
    }

    // A byte flipped in each file, its SHA-256 in the manifest brought in
    // line with it: the key still tells.
    for (n, file) in old.files.iter().enumerate() {
        let id = format!("20200101T00000{n}.000Z");
        damaged_copy(&dir, &old.id, &id, &file.name, |bytes| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        });
        let (_, sha256) = steward_backup::digest_file(&dir.join(&id).join(&file.name)).unwrap();
        rewrite_manifest(&dir, &id, |m| {
            m["id"] = id.clone().into();
            m["files"][n]["sha256"] = sha256.into();
        });
        let pick = Pick::Id(id.clone());
        let verified = backups.verify(&pick, &source.url, None).await;
        assert!(
            matches!(&verified, Err(BackupError::Corrupt(e)) if e.contains("altered")),
            "{} altered: verify said {verified:?}",
            file.name
        );
        let refused = refused_before_writing(&backups, backend, &pick).await;
        assert!(
            matches!(refused, BackupError::Corrupt(_)),
            "{}: {refused:?}",
            file.name
        );
    }
    // A sound file of this backup, presented as another backup's.
    let renamed = "20200101T000009.000Z";
    damaged_copy(&dir, &old.id, renamed, "", |_| {});
    rewrite_manifest(&dir, renamed, |m| m["id"] = renamed.into());
    let refused = refused_before_writing(&backups, backend, &Pick::Id(renamed.into())).await;
    assert!(matches!(refused, BackupError::Corrupt(_)), "{refused:?}");
    // A backup of the format before encryption is refused, and says why.
    let unencrypted = "20200101T000010.000Z";
    damaged_copy(&dir, &old.id, unencrypted, "", |_| {});
    rewrite_manifest(&dir, unencrypted, |m| m["format"] = 1.into());
    let refused = refused_before_writing(&backups, backend, &Pick::Id(unencrypted.into())).await;
    assert!(
        matches!(&refused, BackupError::Mismatch(e) if e.contains("before backups were encrypted")),
        "{refused:?}"
    );
    for id in [renamed, unencrypted] {
        std::fs::remove_dir_all(dir.join(id)).unwrap();
    }
    for n in 0..old.files.len() {
        std::fs::remove_dir_all(dir.join(format!("20200101T00000{n}.000Z"))).unwrap();
    }

    // Without its key (another key configured), the backup is refused with
    // the id of the key it needs.
    let mut other = config(data.path());
    other.backup.encryption_key = Some(Secret::new(NEXT_KEY));
    let without = Backups::from_config(&other).unwrap();
    let pick = Pick::Id(old.id.clone());
    for refused in [
        without
            .verify(&pick, &source.url, None)
            .await
            .expect_err("no key"),
        refused_before_writing(&without, backend, &pick).await,
    ] {
        let said = refused.to_string();
        assert!(matches!(refused, BackupError::Key(_)), "{refused:?}");
        assert!(
            said.contains(&old.key_id) && said.contains("backup.previous_encryption_keys"),
            "{said}"
        );
    }
    // No key at all: refused as clearly.
    let mut none = config(data.path());
    none.backup.encryption_key = None;
    let keyless = Backups::from_config(&none).unwrap();
    let said = keyless
        .verify(&pick, &source.url, None)
        .await
        .expect_err("no key")
        .to_string();
    assert!(said.contains("backup.encryption_key is not set"), "{said}");

    // Rotated: new backups are sealed under the new key, and the old key,
    // kept as a previous one, still opens the older backup.
    let mut rotated = config(data.path());
    rotated.backup.encryption_key = Some(Secret::new(NEXT_KEY));
    rotated.backup.previous_encryption_keys = vec![Secret::new(KEY)];
    let rotated = Backups::from_config(&rotated).unwrap();
    let new = rotated
        .create(source.store.as_ref(), &source.url, &blobs)
        .await
        .unwrap();
    assert_ne!(new.key_id, old.key_id);
    for pick in [Pick::Id(old.id.clone()), Pick::Id(new.id.clone())] {
        rotated.verify(&pick, &source.url, None).await.unwrap();
        let (target, _guard) = empty_target(backend).await;
        rotated
            .restore(&pick, &target, None, false, |_| true)
            .await
            .unwrap();
        let mut rows = database_digest(&target).await;
        // The newer backup holds the record of the older one's run.
        rows.remove("backup_runs");
        let mut expected = rows_before.clone();
        expected.remove("backup_runs");
        assert_eq!(rows, expected);
    }
    // The old key alone does not open the new backup.
    let refused = backups
        .verify(&Pick::Id(new.id.clone()), &source.url, None)
        .await
        .expect_err("the new key is needed");
    assert!(matches!(refused, BackupError::Key(_)), "{refused:?}");
}

/// Runs `work`, failing the test with `what` if it does not finish in a
/// minute: a backup that hangs on a full disk is a failure to report, not a
/// test that never ends.
async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(60), work)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within a minute"))
}

/// A tmpfs of `megabytes`, unmounted when dropped.
struct Tmpfs(PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Tmpfs {
    fn mount(megabytes: u32) -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        // Bounded: a mount that cannot finish fails the test rather than hanging it.
        let output = std::process::Command::new("timeout")
            .args([
                "20",
                "mount",
                "-t",
                "tmpfs",
                "-o",
                &format!("size={megabytes}m"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        Ok(Self(dir.path().to_owned(), dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("timeout")
            .args(["20", "umount"])
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_backup_and_keeps_the_earlier_ones() {
    let disk = match Tmpfs::mount(2) {
        Ok(disk) => disk,
        Err(e) => {
            eprintln!("skipped: backend not configured (tmpfs: mounting needs root: {e})");
            return;
        }
    };
    let source = database(Backend::Sqlite).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    seed(source.store.as_ref(), &blobs, 0).await;
    let mut settings = config(data.path());
    settings.backup.dir = Some(disk.0.clone());
    let backups = Backups::from_config(&settings).unwrap();
    let first = within(
        "the first backup",
        backups.create(source.store.as_ref(), &source.url, &blobs),
    )
    .await
    .unwrap();

    blobs
        .put(
            "orgs/big/documents/scan",
            steward_testkit::seed::incompressible(3 * 1024 * 1024, 1).into(),
        )
        .await
        .unwrap();
    let failed = within(
        "the backup that fills the disk",
        backups.create(source.store.as_ref(), &source.url, &blobs),
    )
    .await;
    let error = failed.unwrap_err().to_string();
    assert!(error.contains("No space left on device"), "{error}");

    let names: Vec<String> = std::fs::read_dir(&disk.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [first.id.as_str()], "nothing half-made is left");
    backups
        .verify(&Pick::Latest, &source.url, None)
        .await
        .unwrap();
    let status = source.store.backup_status().await.unwrap();
    assert_eq!(status.last_success.unwrap().backup_id, first.id);
    let failure = status.last_failure.unwrap();
    assert!(failure.error.unwrap().contains("No space left"));
    assert!(failure.finished_at >= failure.started_at);
}

async fn ids(backups: &Backups) -> Vec<String> {
    backups
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_by_count_and_by_age() {
    let source = database(Backend::Sqlite).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    seed(source.store.as_ref(), &blobs, 0).await;
    let mut settings = config(data.path());
    settings.backup.keep_count = 2;
    let two = Backups::from_config(&settings).unwrap();
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(
            two.create(source.store.as_ref(), &source.url, &blobs)
                .await
                .unwrap()
                .id,
        );
    }
    let listed = ids(&two).await;
    assert_eq!(listed, made[1..], "the two newest stay");

    // By age: a backup older than keep_days goes, whatever the count. And
    // a dump a killed restore opened two days ago (in clear) goes too; one
    // opened now may be in use, and stays.
    let old = "20200101T000000.000Z";
    damaged_copy(two.dir(), &made[2], old, "", |_| {});
    let (stale, fresh) = (
        two.dir().join(".opened-stale"),
        two.dir().join(".opened-fresh"),
    );
    for opened in [&stale, &fresh] {
        std::fs::create_dir(opened).unwrap();
        std::fs::write(opened.join("database.pgdump"), b"in clear").unwrap();
    }
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(&stale)
        .status()
        .unwrap();
    assert!(touched.success());
    settings.backup.keep_count = 10;
    let by_age = Backups::from_config(&settings).unwrap();
    let newest = by_age
        .create(source.store.as_ref(), &source.url, &blobs)
        .await
        .unwrap()
        .id;
    let listed = ids(&by_age).await;
    assert_eq!(listed, [made[1].clone(), made[2].clone(), newest]);
    assert!(!stale.exists(), "an abandoned opened dump is deleted");
    assert!(fresh.exists());
}

/// The S3 test server's settings (moto takes any credentials).
fn s3_at(endpoint: &str) -> StorageConfig {
    StorageConfig {
        url: None,
        s3_endpoint: Some(endpoint.into()),
        s3_region: Some("us-east-1".into()),
        s3_access_key_id: Some("steward".into()),
        s3_secret_access_key: Some(Secret::new("steward-secret")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_are_copied_to_s3_and_restored_from_there() {
    let Ok(endpoint) = std::env::var("STEWARD_TEST_S3_ENDPOINT") else {
        eprintln!(
            "skipped: backend not configured (STEWARD_TEST_S3_ENDPOINT: run scripts/s3-server)"
        );
        return;
    };
    let source = database(Backend::Sqlite).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    seed(source.store.as_ref(), &blobs, 0).await;
    let rows_before = database_digest(&source.url).await;
    let mut settings = config(data.path());
    settings.storage = s3_at(&endpoint);
    settings.backup.s3_url = Some(format!("s3://steward-test/backups-{}", uuid_like()));
    let backups = Backups::from_config(&settings).unwrap();
    let manifest = backups
        .create(source.store.as_ref(), &source.url, &blobs)
        .await
        .unwrap();
    let listed = backups.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].local && listed[0].remote);

    // The machine is lost: only the S3 copy is left.
    std::fs::remove_dir_all(backups.dir()).unwrap();
    let listed = backups.list().await.unwrap();
    assert!(!listed[0].local && listed[0].remote);
    assert_eq!(listed[0].manifest.as_ref().unwrap().id, manifest.id);
    let (target, _guard) = empty_target(Backend::Sqlite).await;
    backups
        .restore(&Pick::Latest, &target, None, false, |_| true)
        .await
        .unwrap();
    assert_eq!(database_digest(&target).await, rows_before);

    // S3 down: the run fails and says so; the local copy is complete and kept.
    settings.storage = s3_at("http://127.0.0.1:1");
    let unreachable = Backups::from_config(&settings).unwrap();
    let failed = unreachable
        .create(source.store.as_ref(), &source.url, &blobs)
        .await;
    assert!(matches!(failed, Err(BackupError::Remote(_))), "{failed:?}");
    let local: Vec<_> = std::fs::read_dir(unreachable.dir()).unwrap().collect();
    assert_eq!(local.len(), 2, "the fetched copy and the new local one");
    let status = source.store.backup_status().await.unwrap();
    assert!(status.last_failure.unwrap().error.unwrap().contains("S3"));
}

fn uuid_like() -> String {
    DocumentId::new().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pg_dump_fails_clearly_and_leaves_nothing() {
    let Some(source) = database(Backend::Postgres).await else {
        eprintln!("skipped: backend not configured");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let blobs = Blobs::local(&data.path().join("blobs")).unwrap();
    let mut settings = config(data.path());
    settings.backup.pg_dump = "/nonexistent/pg_dump".into();
    let backups = Backups::from_config(&settings).unwrap();
    let error = backups
        .create(source.store.as_ref(), &source.url, &blobs)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("backup.pg_dump"), "{error}");
    assert_eq!(std::fs::read_dir(backups.dir()).unwrap().count(), 0);
}
