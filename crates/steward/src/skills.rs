//! `steward skills import`: every skill in a folder, as the Agent Skills
//! format lays them out (one folder per skill, each holding its
//! `SKILL.md`; a zipped one too), or the folder itself when it is one
//! skill. A skill stored just so already is left alone; a changed one gets
//! its next version; one that is not a skill is reported and skipped, never
//! stops the rest.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use steward_store::{NewSkill, Organization, Skill, Store, TenantScope};
use steward_tools::skills::{self, SkillPackage};

pub struct Report {
    pub failed: usize,
}

/// What importing one skill did.
enum Outcome {
    New(Skill),
    Updated(Skill),
    Unchanged(Skill),
}

pub async fn import(store: &dyn Store, organization: &Organization, dir: &Path) -> Result<Report> {
    let scope = TenantScope::for_operator(organization.id);
    let found = skill_paths(dir)?;
    if found.is_empty() {
        bail!(
            "{} holds no skills: a skill is a folder holding a SKILL.md, or such a folder zipped",
            dir.display()
        );
    }
    let (mut imported, mut unchanged, mut failed) = (0, 0, 0);
    for path in found {
        let shown = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let outcome = match read(&path) {
            Ok(package) => store_skill(store, &scope, package).await,
            Err(why) => Err(anyhow::anyhow!(why)),
        };
        match outcome {
            Ok(Outcome::Unchanged(skill)) => {
                unchanged += 1;
                println!("{}  version {}  unchanged", skill.name, skill.version);
            }
            Ok(Outcome::New(skill) | Outcome::Updated(skill)) => {
                imported += 1;
                println!(
                    "{}  version {}  imported ({} files, {} bytes)",
                    skill.name,
                    skill.version,
                    skill.files.len(),
                    skill.bytes
                );
            }
            Err(why) => {
                failed += 1;
                eprintln!("{shown}: {why:#}");
            }
        }
    }
    eprintln!(
        "{imported} imported into {}, {unchanged} unchanged, {failed} failed",
        organization.name
    );
    Ok(Report { failed })
}

/// The skills `dir` holds, by name: itself when it has a `SKILL.md`, else
/// its folders and `.zip` files (hidden ones left out).
fn skill_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.join("SKILL.md").is_file() {
        return Ok(vec![dir.to_owned()]);
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type()?;
        if name.starts_with('.') {
            continue;
        }
        if kind.is_dir() || (kind.is_file() && name.to_ascii_lowercase().ends_with(".zip")) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

fn read(path: &Path) -> std::result::Result<SkillPackage, String> {
    if path.is_dir() {
        return skills::from_folder(path).map_err(|e| e.0);
    }
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > skills::MAX_UPLOAD_BYTES as u64 {
        return Err(format!(
            "{size} bytes; a zipped skill is at most {}",
            skills::MAX_UPLOAD_BYTES
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    skills::from_zip(&bytes).map_err(|e| e.0)
}

async fn store_skill(
    store: &dyn Store,
    scope: &TenantScope,
    package: SkillPackage,
) -> Result<Outcome> {
    let current = store
        .skills(scope)
        .await?
        .into_iter()
        .find(|s| s.name == package.name);
    if let Some(current) = current
        && same(store, scope, &current, &package).await?
    {
        return Ok(Outcome::Unchanged(current));
    }
    let new = NewSkill {
        name: package.name,
        description: package.description,
        body: package.body,
        skill_md: package.skill_md,
        files: package.files,
    };
    let stored = store.add_skill(scope, new).await?;
    Ok(match stored.version {
        1 => Outcome::New(stored),
        _ => Outcome::Updated(stored),
    })
}

/// Whether the stored version holds exactly what the package does.
async fn same(
    store: &dyn Store,
    scope: &TenantScope,
    current: &Skill,
    package: &SkillPackage,
) -> Result<bool> {
    let mut paths: Vec<&str> = package.files.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    let mut stored: Vec<&str> = current.files.iter().map(String::as_str).collect();
    stored.sort();
    if current.skill_md != package.skill_md || stored != paths {
        return Ok(false);
    }
    for (path, content) in &package.files {
        if store.skill_file(scope, current.id, path).await? != *content {
            return Ok(false);
        }
    }
    Ok(true)
}
