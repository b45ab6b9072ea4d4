//! What a file is, found from its bytes. A file's name is only a label: a
//! binary file named `notes.txt` is binary.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Csv,
    Json,
    Pdf,
    /// A zip archive: read as DOCX.
    Zip,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Csv => "text/csv",
            Format::Json => "application/json",
            Format::Pdf => "application/pdf",
            // The only zip Steward reads; another fails at extraction.
            Format::Zip => {
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            }
        }
    }
}

/// Looks at the content; `Err` says why it is not something Steward reads.
pub fn sniff(bytes: &[u8]) -> Result<Format, String> {
    if bytes.starts_with(b"%PDF-") {
        return Ok(Format::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(Format::Zip);
    }
    let Some(text) = as_text(bytes) else {
        return Err("the file is binary data, not text or a supported document format".into());
    };
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err("the file is empty".into());
    }
    if looks_like_html(trimmed) {
        return Ok(Format::Html);
    }
    if (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(text).is_ok()
    {
        return Ok(Format::Json);
    }
    if looks_like_csv(text) {
        return Ok(Format::Csv);
    }
    if looks_like_markdown(text) {
        return Ok(Format::Markdown);
    }
    Ok(Format::Text)
}

/// The bytes as text: UTF-8 (a byte-order mark is dropped) with no NULs and
/// few control characters.
pub fn as_text(bytes: &[u8]) -> Option<&str> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).ok()?;
    let controls = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
        .count();
    let nul = text.contains('\0');
    (!nul && controls * 100 <= text.len().max(1)).then_some(text)
}

fn looks_like_html(trimmed: &str) -> bool {
    let head: String = trimmed
        .chars()
        .take(1024)
        .collect::<String>()
        .to_lowercase();
    head.starts_with("<!doctype html")
        || head.starts_with("<html")
        || (head.starts_with('<')
            && ["<body", "<p>", "<div", "<h1", "<h2", "<title", "<head"]
                .iter()
                .any(|tag| head.contains(tag)))
}

/// At least two rows, and the first rows (up to 20) agree on two or more fields.
fn looks_like_csv(text: &str) -> bool {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut widths = Vec::new();
    for record in reader.records().take(20) {
        match record {
            Ok(record) => widths.push(record.len()),
            Err(_) => return false,
        }
    }
    widths.len() >= 2 && widths[0] >= 2 && widths.iter().all(|w| *w == widths[0])
}

fn looks_like_markdown(text: &str) -> bool {
    text.lines().take(200).any(|line| {
        let line = line.trim_end();
        let hashes = line.chars().take_while(|c| *c == '#').count();
        (1..=6).contains(&hashes) && line[hashes..].starts_with(' ')
            || line.starts_with("```")
            || (line.contains("](") && line.contains('['))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_found_from_content() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), Ok(Format::Pdf));
        assert_eq!(sniff(b"PK\x03\x04rest"), Ok(Format::Zip));
        assert_eq!(
            sniff(b"<!DOCTYPE html><html><p>x</p></html>"),
            Ok(Format::Html)
        );
        assert_eq!(sniff(b"  <div><p>Hello</p></div>"), Ok(Format::Html));
        assert_eq!(sniff(b"{\"a\": [1, 2]}"), Ok(Format::Json));
        assert_eq!(sniff(b"[{\"a\": 1}]"), Ok(Format::Json));
        assert_eq!(sniff(b"{not json"), Ok(Format::Text));
        assert_eq!(sniff(b"name,price\nTea,3\nCake,4\n"), Ok(Format::Csv));
        assert_eq!(sniff(b"# Title\n\nSome text."), Ok(Format::Markdown));
        assert_eq!(
            sniff(b"See [the guide](https://x.org)."),
            Ok(Format::Markdown)
        );
        assert_eq!(
            sniff(b"Plain words, with a comma.\nAnd another line."),
            Ok(Format::Text)
        );
        assert_eq!(sniff(b"\xEF\xBB\xBFHello"), Ok(Format::Text));
        assert_eq!(sniff("Grüße aus Köln".as_bytes()), Ok(Format::Text));
    }

    #[test]
    fn binary_and_empty_files_are_refused_with_a_reason() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert!(sniff(png).unwrap_err().contains("binary"));
        assert!(sniff(b"text\0with a nul").unwrap_err().contains("binary"));
        assert!(sniff(&[0xff, 0xfe, 0x41]).unwrap_err().contains("binary"));
        let noisy: Vec<u8> = (0..200u8)
            .map(|i| if i % 10 == 0 { 1 } else { b'a' })
            .collect();
        assert!(sniff(&noisy).is_err());
        assert!(sniff(b"   \n\n ").unwrap_err().contains("empty"));
        assert!(sniff(b"").unwrap_err().contains("empty"));
    }
}
