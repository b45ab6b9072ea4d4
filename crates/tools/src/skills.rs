//! Skills in the open Agent Skills format: a folder whose `SKILL.md` has
//! YAML front matter (`name`, `description`) and a Markdown body of
//! instructions, beside optional resource files. Uploaded as a zip of the
//! folder or as the `SKILL.md` alone, and read here with caps on every size
//! (a small zip can inflate to gigabytes) and no path that leaves the folder.

use std::io::Read;

use serde::Deserialize;

/// An upload larger than this is refused before it is read.
pub const MAX_UPLOAD_BYTES: usize = 5 * 1024 * 1024;
/// `SKILL.md` itself, at most.
pub const MAX_SKILL_MD_BYTES: usize = 256 * 1024;
/// Instructions sent as a JSON field, at most: in any script, with the
/// front matter, within [`MAX_SKILL_MD_BYTES`].
pub const MAX_INSTRUCTIONS_CHARS: usize = 60_000;
/// Resource files besides `SKILL.md`, at most.
pub const MAX_FILES: usize = 100;
/// One resource file, decompressed, at most.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;
/// Everything in the folder, decompressed, at most.
pub const MAX_TOTAL_BYTES: usize = 8 * 1024 * 1024;
/// Entries a zip may list (directories included) before it is not read.
const MAX_ENTRIES: usize = 1_000;
const MAX_NAME_CHARS: usize = 64;
const MAX_DESCRIPTION_CHARS: usize = 1_024;
const MAX_PATH_CHARS: usize = 255;

/// A skill as uploaded, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct SkillPackage {
    pub name: String,
    pub description: String,
    /// The Markdown after the front matter: what the model reads when it
    /// uses the skill.
    pub body: String,
    /// `SKILL.md` as uploaded, front matter included.
    pub skill_md: String,
    /// Resource files by their path inside the folder (`scripts/x.py`), in
    /// the archive's order.
    pub files: Vec<(String, Vec<u8>)>,
}

impl SkillPackage {
    /// Bytes of everything the skill holds.
    pub fn bytes(&self) -> usize {
        self.skill_md.len() + self.files.iter().map(|(_, f)| f.len()).sum::<usize>()
    }
}

/// Why an upload is not a skill, said for the person who uploaded it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SkillError(pub String);

fn refused(why: impl Into<String>) -> SkillError {
    SkillError(why.into())
}

/// A skill name: 1 to 64 lowercase letters, digits and hyphens, neither
/// starting nor ending with a hyphen, without two in a row.
pub fn check_name(name: &str) -> Result<(), SkillError> {
    let shaped = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if shaped {
        Ok(())
    } else {
        Err(refused(format!(
            "name must be 1 to {MAX_NAME_CHARS} lowercase letters, digits and single hyphens, not starting or ending with one (got '{}')",
            name.chars().take(80).collect::<String>()
        )))
    }
}

#[derive(Deserialize)]
struct FrontMatter {
    name: Option<String>,
    description: Option<String>,
}

/// A skill uploaded as its `SKILL.md` alone.
pub fn from_markdown(bytes: &[u8]) -> Result<SkillPackage, SkillError> {
    if bytes.len() > MAX_SKILL_MD_BYTES {
        return Err(refused(format!(
            "SKILL.md is {} bytes; at most {MAX_SKILL_MD_BYTES}",
            bytes.len()
        )));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| refused("SKILL.md is not UTF-8 text"))?;
    let (front, body) = split_front_matter(text)?;
    let front: FrontMatter = serde_norway::from_str(front)
        .map_err(|e| refused(format!("the front matter of SKILL.md is not YAML: {e}")))?;
    let name = front
        .name
        .ok_or_else(|| refused("the front matter of SKILL.md has no name"))?;
    check_name(&name)?;
    let description = front
        .description
        .map(|d| d.trim().to_owned())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| refused("the front matter of SKILL.md has no description"))?;
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(refused(format!(
            "description is {} characters; at most {MAX_DESCRIPTION_CHARS}",
            description.chars().count()
        )));
    }
    let line_breaks_and_tabs = |c: char| matches!(c, '\n' | '\r' | '\t');
    let odd = |text: &str| {
        text.chars()
            .any(|c| c.is_control() && !line_breaks_and_tabs(c))
    };
    if odd(&description) || odd(body) {
        return Err(refused("SKILL.md holds control characters"));
    }
    Ok(SkillPackage {
        name,
        description,
        body: body.trim().to_owned(),
        skill_md: text.to_owned(),
        files: Vec::new(),
    })
}

/// The YAML between the opening `---` line and the next, and what follows.
fn split_front_matter(text: &str) -> Result<(&str, &str), SkillError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let missing = || refused("SKILL.md must start with YAML front matter between two '---' lines");
    let rest = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
        .ok_or_else(missing)?;
    let mut offset = 0;
    for line in rest.split_inclusive('\n') {
        if line.trim_end() == "---" {
            return Ok((&rest[..offset], &rest[offset + line.len()..]));
        }
        offset += line.len();
    }
    Err(missing())
}

/// A skill uploaded as a zip of its folder: `SKILL.md` at the top, or in
/// the one folder at the top (which then bears the skill's name).
pub fn from_zip(bytes: &[u8]) -> Result<SkillPackage, SkillError> {
    if bytes.len() > MAX_UPLOAD_BYTES {
        return Err(refused(format!(
            "the upload is {} bytes; at most {MAX_UPLOAD_BYTES}",
            bytes.len()
        )));
    }
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|_| refused("the upload is not a readable zip archive"))?;
    if archive.len() > MAX_ENTRIES {
        return Err(refused(format!(
            "the archive lists {} entries; a skill holds at most {MAX_FILES} files",
            archive.len()
        )));
    }
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut total = 0usize;
    for index in 0..archive.len() {
        let entry = archive
            .by_index(index)
            .map_err(|e| refused(format!("the archive is damaged: {e}")))?;
        let path = entry
            .name()
            .map_err(|_| refused("an entry's name is not readable"))?
            .into_owned();
        check_path(&path)?;
        if entry.is_symlink() {
            return Err(refused(format!(
                "{path} is a symbolic link; a skill holds files only"
            )));
        }
        if entry.encrypted() {
            return Err(refused(format!("{path} is encrypted")));
        }
        if entry.is_dir() {
            continue;
        }
        if entries.len() > MAX_FILES {
            return Err(refused(format!(
                "a skill holds at most {MAX_FILES} files besides SKILL.md"
            )));
        }
        // The declared size is not trusted: reading stops one byte past the cap.
        let cap = MAX_FILE_BYTES.max(MAX_SKILL_MD_BYTES);
        let mut content = Vec::new();
        entry
            .take(cap as u64 + 1)
            .read_to_end(&mut content)
            .map_err(|e| refused(format!("{path} is damaged: {e}")))?;
        if content.len() > cap {
            return Err(refused(format!(
                "{path} decompresses to more than {cap} bytes"
            )));
        }
        total += content.len();
        if total > MAX_TOTAL_BYTES {
            return Err(refused(format!(
                "the skill decompresses to more than {MAX_TOTAL_BYTES} bytes"
            )));
        }
        entries.push((path, content));
    }
    let folder = top_folder(&entries)?;
    let inside = entries
        .into_iter()
        .map(|(path, content)| {
            let path = path.strip_prefix(&folder).unwrap_or(&path).to_owned();
            (path, content)
        })
        .collect();
    assemble(inside, folder.trim_end_matches('/'))
}

/// A skill read from its folder on disk (`steward skills import`), with the
/// caps of an upload. Hidden files and folders (`.git`, `.DS_Store`) are
/// left out; a symbolic link or anything but a file or folder is refused.
pub fn from_folder(folder: &std::path::Path) -> Result<SkillPackage, SkillError> {
    let unreadable = |path: &str, e: std::io::Error| refused(format!("{path}: {e}"));
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    let mut listed = 0usize;
    let mut total = 0usize;
    // Folders still to read, by their path inside the skill's folder.
    let mut pending = vec![String::new()];
    while let Some(inner) = pending.pop() {
        let listing = std::fs::read_dir(folder.join(&inner)).map_err(|e| unreadable(&inner, e))?;
        for entry in listing {
            let entry = entry.map_err(|e| unreadable(&inner, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                return Err(refused(format!("a file name in '{inner}' is not UTF-8")));
            };
            if name.starts_with('.') {
                continue;
            }
            listed += 1;
            if listed > MAX_ENTRIES {
                return Err(refused(format!(
                    "the folder holds more than {MAX_ENTRIES} entries; a skill holds at most {MAX_FILES} files"
                )));
            }
            let path = match inner.is_empty() {
                true => name,
                false => format!("{inner}/{name}"),
            };
            check_path(&path)?;
            // Not followed: a link could lead out of the folder.
            let kind = entry.file_type().map_err(|e| unreadable(&path, e))?;
            if kind.is_symlink() {
                return Err(refused(format!(
                    "{path} is a symbolic link; a skill holds files only"
                )));
            }
            if kind.is_dir() {
                pending.push(path);
                continue;
            }
            if !kind.is_file() {
                return Err(refused(format!("{path} is not a file")));
            }
            if entries.len() > MAX_FILES {
                return Err(refused(format!(
                    "a skill holds at most {MAX_FILES} files besides SKILL.md"
                )));
            }
            let cap = MAX_FILE_BYTES.max(MAX_SKILL_MD_BYTES);
            let mut content = Vec::new();
            std::fs::File::open(entry.path())
                .and_then(|file| file.take(cap as u64 + 1).read_to_end(&mut content))
                .map_err(|e| unreadable(&path, e))?;
            if content.len() > cap {
                return Err(refused(format!("{path} is more than {cap} bytes")));
            }
            total += content.len();
            if total > MAX_TOTAL_BYTES {
                return Err(refused(format!(
                    "the skill holds more than {MAX_TOTAL_BYTES} bytes"
                )));
            }
            entries.push((path, content));
        }
    }
    entries.sort();
    let name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assemble(entries, name)
}

/// A skill from its files, by their paths inside its folder (`SKILL.md` at
/// the top), the folder named `folder` (empty: not known).
fn assemble(mut entries: Vec<(String, Vec<u8>)>, folder: &str) -> Result<SkillPackage, SkillError> {
    let skill_md = entries
        .iter()
        .position(|(path, _)| path == "SKILL.md")
        .ok_or_else(|| refused("the skill's folder holds no SKILL.md at its top"))?;
    let (_, markdown) = entries.remove(skill_md);
    let mut package = from_markdown(&markdown)?;
    let folder_name = folder;
    if !folder_name.is_empty() && folder_name != package.name {
        return Err(refused(format!(
            "the folder is named '{folder_name}' but the skill '{}': they must match",
            package.name
        )));
    }
    for (path, content) in entries {
        if content.len() > MAX_FILE_BYTES {
            return Err(refused(format!(
                "{path} is more than {MAX_FILE_BYTES} bytes"
            )));
        }
        package.files.push((path, content));
    }
    Ok(package)
}

/// A path inside the folder: relative, `/`-separated, no `..`, nothing odd.
fn check_path(path: &str) -> Result<(), SkillError> {
    let shown: String = path.chars().take(80).collect();
    let bad = path.is_empty()
        || path.chars().count() > MAX_PATH_CHARS
        || path.starts_with('/')
        || path.contains('\\')
        || path.chars().any(char::is_control)
        || path
            .trim_end_matches('/')
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == ".." || part.contains(':'));
    if bad {
        return Err(refused(format!(
            "'{shown}' is not a path inside the skill's folder"
        )));
    }
    Ok(())
}

/// `name/` when every file is inside one folder of that name, else "".
fn top_folder(entries: &[(String, Vec<u8>)]) -> Result<String, SkillError> {
    if entries.iter().any(|(path, _)| path == "SKILL.md") {
        return Ok(String::new());
    }
    let firsts: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|(path, _)| path.split('/').next().unwrap_or(""))
        .collect();
    match (firsts.len(), firsts.first()) {
        (1, Some(first)) if entries.iter().all(|(p, _)| p.contains('/')) => Ok(format!("{first}/")),
        _ => Err(refused("the archive holds no SKILL.md at its top")),
    }
}

// --- Offered to a model ---

/// The server Steward's skill tools are offered under (`skills.use_skill`).
pub const SERVER: &str = "skills";
/// A resource file shown to a model, at most; the rest is cut and said so.
const MAX_SHOWN_BYTES: usize = 64 * 1024;

/// The tools that load a chatbot's skills, when it has any: `use_skill`
/// (the instructions) and `read_skill_file` (a resource file).
pub fn tools_for(skills: &[steward_store::Skill]) -> Vec<crate::Tool> {
    if skills.is_empty() {
        return Vec::new();
    }
    let names: Vec<&str> = skills.iter().map(|s| s.name.as_str()).collect();
    vec![
        crate::Tool {
            server: SERVER.into(),
            name: "use_skill".into(),
            description: "Loads a skill's instructions (the skills are listed in the system prompt). Call it before doing what a skill is for, then follow what it says.".into(),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": { "name": { "type": "string", "enum": names } },
                "required": ["name"],
                "additionalProperties": false
            }),
        },
        crate::Tool {
            server: SERVER.into(),
            name: "read_skill_file".into(),
            description: "Reads one of a skill's resource files, by the path its instructions or use_skill name.".into(),
            input_schema: serde_json::json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string", "enum": names },
                    "path": { "type": "string", "maxLength": MAX_PATH_CHARS }
                },
                "required": ["name", "path"],
                "additionalProperties": false
            }),
        },
    ]
}

/// What the system prompt says of the skills a reply may use: each name
/// and description, never their instructions (those are loaded on use).
pub fn prompt_block(skills: &[steward_store::Skill]) -> String {
    let mut block = String::from(
        "Skills you can use (load one with the use_skill tool before following it):\n",
    );
    for skill in skills {
        block.push_str(&format!("- {}: {}\n", skill.name, skill.description));
    }
    block
}

/// Calls `use_skill` or `read_skill_file` for the chatbot of `context`: only
/// a skill it offers to the person the reply is for, in its latest version. Loading one is its activation,
/// recorded once per call.
pub async fn call(
    store: &std::sync::Arc<dyn steward_store::Store>,
    context: &crate::CallContext,
    tool: &crate::Tool,
    input: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, crate::ToolError> {
    use crate::ToolError;
    let unavailable = |error: steward_store::StoreError| {
        tracing::warn!(%error, "reading a skill failed");
        ToolError("the skill could not be read just now".into())
    };
    let name = input
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or_else(|| ToolError("name: the skill's name is required".into()))?;
    let chatbot = store
        .chatbot(&context.scope, context.chatbot)
        .await
        .map_err(unavailable)?;
    let offered = if chatbot.skills.iter().any(|s| s == name) {
        store
            .offered_skills(&context.scope, &[name.to_owned()], context.person)
            .await
            .map_err(unavailable)?
            .pop()
    } else {
        None
    };
    let Some(skill) = offered else {
        return Err(ToolError(format!("there is no skill '{name}' to use here")));
    };
    match tool.name.as_str() {
        "use_skill" => {
            let reply = context
                .reply
                .ok_or_else(|| ToolError("skills are used in a reply".into()))?;
            let activation = steward_store::NewActivation {
                tool_call_id: context.key,
                skill_id: skill.id,
                chatbot_id: context.chatbot,
                conversation_id: context.conversation,
                reply_id: reply,
            };
            store
                .record_activation(&context.scope, &activation)
                .await
                .map_err(unavailable)?;
            let mut loaded = skill.body.clone();
            if !skill.files.is_empty() {
                loaded.push_str("\n\nFiles of this skill (read_skill_file): ");
                loaded.push_str(&skill.files.join(", "));
            }
            Ok(loaded)
        }
        "read_skill_file" => {
            let path = input
                .get("path")
                .and_then(|p| p.as_str())
                .ok_or_else(|| ToolError("path: the file's path is required".into()))?;
            if !skill.files.iter().any(|f| f == path) {
                return Err(ToolError(format!(
                    "the skill '{name}' has no file '{path}'"
                )));
            }
            let content = store
                .skill_file(&context.scope, skill.id, path)
                .await
                .map_err(unavailable)?;
            match String::from_utf8(content) {
                Ok(text) => Ok(crate::bounded(text, MAX_SHOWN_BYTES)),
                Err(binary) => Ok(format!(
                    "{path} is not text ({} bytes); it cannot be shown",
                    binary.as_bytes().len()
                )),
            }
        }
        other => Err(ToolError(format!(
            "{SERVER}.{other} is not a tool Steward serves"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const SKILL: &str = "---\nname: expense-report\ndescription: >\n  Files an expense report from receipts. Use when someone\n  asks to claim expenses.\nlicense: Apache-2.0\nmetadata:\n  author: finance\n---\n# Expense reports\n\n1. Ask for the receipts.\n";

    fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn refusal(result: Result<SkillPackage, SkillError>) -> String {
        result.expect_err("refused").0
    }

    #[test]
    fn a_skill_md_alone_or_a_zipped_folder_is_read() {
        let alone = from_markdown(SKILL.as_bytes()).unwrap();
        assert_eq!(alone.name, "expense-report");
        assert_eq!(
            alone.description,
            "Files an expense report from receipts. Use when someone asks to claim expenses."
        );
        assert!(alone.body.starts_with("# Expense reports"));
        let folder = zip(&[
            ("expense-report/SKILL.md", SKILL.as_bytes()),
            ("expense-report/reference/policy.md", b"Max 50 EUR a day."),
        ]);
        let read = from_zip(&folder).unwrap();
        assert_eq!(
            read.files,
            vec![(
                "reference/policy.md".to_owned(),
                b"Max 50 EUR a day.".to_vec()
            )]
        );
        let flat = zip(&[("SKILL.md", SKILL.as_bytes()), ("forms/claim.txt", b"x")]);
        assert_eq!(from_zip(&flat).unwrap().files[0].0, "forms/claim.txt");
    }

    #[test]
    fn names_and_descriptions_keep_to_the_format() {
        for name in [
            "Expense",
            "expense_report",
            "-x",
            "x-",
            "a--b",
            "",
            &"a".repeat(65),
        ] {
            assert!(check_name(name).is_err(), "{name:?}");
        }
        check_name(&"a".repeat(64)).unwrap();
        let with = |front: &str| format!("---\n{front}\n---\nbody");
        for (front, why) in [
            ("description: x", "no name"),
            ("name: ok", "no description"),
            ("name: Capital\ndescription: x", "lowercase"),
            ("name: ok\ndescription: ''", "no description"),
            ("name: [ok\ndescription: x", "not YAML"),
        ] {
            let refused = refusal(from_markdown(with(front).as_bytes()));
            assert!(refused.contains(why), "{front}: {refused}");
        }
        let long = with(&format!("name: ok\ndescription: {}", "d".repeat(1025)));
        assert!(refusal(from_markdown(long.as_bytes())).contains("at most 1024"));
        assert!(refusal(from_markdown(b"# no front matter")).contains("front matter"));
        assert!(refusal(from_markdown(b"---\nname: x\n")).contains("front matter"));
        let huge = format!("{SKILL}{}", "x".repeat(MAX_SKILL_MD_BYTES));
        assert!(refusal(from_markdown(huge.as_bytes())).contains("at most"));
        assert!(refusal(from_markdown(&[0xff, 0xfe])).contains("UTF-8"));
        let controlled = format!("{SKILL}and a \u{84} control");
        assert!(refusal(from_markdown(controlled.as_bytes())).contains("control characters"));
    }

    #[test]
    fn hostile_archives_are_refused_with_a_reason() {
        let skill = ("SKILL.md", SKILL.as_bytes());
        for (path, why) in [
            ("../escape.md", "not a path inside"),
            ("/etc/passwd", "not a path inside"),
            ("a/../../b", "not a path inside"),
            ("C:\\windows", "not a path inside"),
            ("c:/x", "not a path inside"),
        ] {
            let refused = refusal(from_zip(&zip(&[skill, (path, b"x")])));
            assert!(refused.contains(why), "{path}: {refused}");
        }
        // A symbolic link to somewhere else.
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        writer.start_file("SKILL.md", options).unwrap();
        writer.write_all(SKILL.as_bytes()).unwrap();
        writer
            .add_symlink("secrets", "/etc/shadow", options)
            .unwrap();
        let linked = writer.finish().unwrap().into_inner();
        assert!(refusal(from_zip(&linked)).contains("symbolic link"));
        // A bomb: a small upload that inflates past every cap.
        let zeros = vec![0u8; MAX_FILE_BYTES + 10];
        let bomb = zip(&[skill, ("zeros.bin", &zeros)]);
        assert!(bomb.len() < 64 * 1024);
        assert!(refusal(from_zip(&bomb)).contains("decompresses to more than"));
        // 10,000 files.
        let names: Vec<String> = (0..10_000).map(|i| format!("f{i}.txt")).collect();
        let mut many: Vec<(&str, &[u8])> = vec![skill];
        many.extend(names.iter().map(|n| (n.as_str(), b"x".as_slice())));
        assert!(refusal(from_zip(&zip(&many))).contains("entries"));
        let names: Vec<String> = (0..=MAX_FILES).map(|i| format!("f{i}.txt")).collect();
        let mut over: Vec<(&str, &[u8])> = vec![skill];
        over.extend(names.iter().map(|n| (n.as_str(), b"x".as_slice())));
        assert!(refusal(from_zip(&zip(&over))).contains("at most 100 files"));
        assert!(refusal(from_zip(b"not a zip")).contains("not a readable zip"));
        assert!(refusal(from_zip(&zip(&[("README.md", b"x")]))).contains("no SKILL.md"));
        let misnamed = zip(&[("other-name/SKILL.md", SKILL.as_bytes())]);
        assert!(refusal(from_zip(&misnamed)).contains("must match"));
        let two = zip(&[
            ("expense-report/SKILL.md", SKILL.as_bytes()),
            ("other/x", b"x"),
        ]);
        assert!(refusal(from_zip(&two)).contains("no SKILL.md"));
    }

    /// A folder under the system's temporary one, removed when dropped.
    struct Folder(std::path::PathBuf);

    impl Folder {
        fn new(name: &str, files: &[(&str, &[u8])]) -> Self {
            static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let made = MADE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let root =
                std::env::temp_dir().join(format!("steward-skills-{}-{made}", std::process::id()));
            let folder = root.join(name);
            for (path, bytes) in files {
                let path = folder.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            std::fs::create_dir_all(&folder).unwrap();
            Self(folder)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
        }
    }

    #[test]
    fn a_skill_is_read_from_its_folder_with_the_caps_of_an_upload() {
        let skill = ("SKILL.md", SKILL.as_bytes());
        let folder = Folder::new(
            "expense-report",
            &[
                skill,
                ("reference/policy.md", b"Max 50 EUR a day."),
                ("forms/claim.txt", b"x"),
                (".git/config", b"hidden"),
                (".DS_Store", b"hidden"),
            ],
        );
        let read = from_folder(&folder.0).unwrap();
        assert_eq!(read.name, "expense-report");
        let paths: Vec<&str> = read.files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["forms/claim.txt", "reference/policy.md"]);

        let misnamed = Folder::new("expenses", &[skill]);
        assert!(refusal(from_folder(&misnamed.0)).contains("must match"));
        let empty = Folder::new("expense-report", &[("README.md", b"x")]);
        assert!(refusal(from_folder(&empty.0)).contains("no SKILL.md"));
        let linked = Folder::new("expense-report", &[skill]);
        std::os::unix::fs::symlink("/etc/passwd", linked.0.join("secrets")).unwrap();
        assert!(refusal(from_folder(&linked.0)).contains("symbolic link"));
        let large = vec![b'x'; MAX_FILE_BYTES + 1];
        let big = Folder::new("expense-report", &[skill, ("big.bin", &large)]);
        assert!(refusal(from_folder(&big.0)).contains("more than"));
        let names: Vec<String> = (0..=MAX_FILES).map(|i| format!("f{i}.txt")).collect();
        let mut over: Vec<(&str, &[u8])> = vec![skill];
        over.extend(names.iter().map(|n| (n.as_str(), b"x".as_slice())));
        let crowded = Folder::new("expense-report", &over);
        assert!(refusal(from_folder(&crowded.0)).contains("at most 100 files"));
        // Empty folders count too: a walk of millions stops early.
        let deep = Folder::new("expense-report", &[skill]);
        for i in 0..=MAX_ENTRIES {
            std::fs::create_dir(deep.0.join(format!("d{i}"))).unwrap();
        }
        assert!(refusal(from_folder(&deep.0)).contains("entries"));
        assert!(
            refusal(from_folder(std::path::Path::new("/no/such/folder"))).contains("No such file")
        );
    }
}
