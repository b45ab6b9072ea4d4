//! DOCX: a zip archive whose `word/document.xml` holds the text. Read with
//! caps on entries and on decompressed size (a small file can inflate to
//! gigabytes), and without an XML library: paragraphs (`<w:p>`), their style
//! (`Heading1`… become headings), and their runs of text (`<w:t>`), tabs and
//! breaks are all that is needed.

use std::io::Read;

use crate::extract::{Budget, Extracted, Limits, Piece};

/// More entries than this is not a document but a trap.
const MAX_ENTRIES: usize = 10_000;

/// Reads a DOCX's text, at most `max_bytes` of XML after decompression.
pub fn docx(bytes: &[u8], limits: Limits) -> Result<Extracted, String> {
    let budget = Budget::new(limits.cpu);
    let max_bytes = limits.max_bytes;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|_| "the file is not a readable zip archive (a DOCX is one)".to_owned())?;
    if archive.len() > MAX_ENTRIES {
        return Err(format!("the archive holds more than {MAX_ENTRIES} entries"));
    }
    let entry = archive
        .by_name("word/document.xml")
        .map_err(|_| "a zip archive that is not a DOCX document is not read".to_owned())?;
    // The declared size is not trusted: reading stops one byte past the cap.
    let mut xml = Vec::new();
    entry
        .take(max_bytes as u64 + 1)
        .read_to_end(&mut xml)
        .map_err(|e| format!("the DOCX document is damaged: {e}"))?;
    if xml.len() > max_bytes {
        return Err(format!(
            "the DOCX document decompresses to more than {} bytes of text",
            max_bytes
        ));
    }
    let xml =
        String::from_utf8(xml).map_err(|_| "the DOCX document is not UTF-8 XML".to_owned())?;
    let pieces = paragraphs(&xml, budget)?;
    if pieces.is_empty() {
        return Err("the document holds no text".into());
    }
    Ok(Extracted {
        title: None,
        pieces,
    })
}

/// The paragraphs of `word/document.xml`, headings by their style.
fn paragraphs(xml: &str, mut budget: Budget) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = xml;
    while let Some(start) = find_tag(rest, "w:p") {
        budget.spend()?;
        let after = &rest[start..];
        let end = after
            .find("</w:p>")
            .map_or(after.len(), |e| e + "</w:p>".len());
        let paragraph = &after[..end];
        rest = &after[end..];
        let text = paragraph_text(paragraph);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match heading_level(paragraph) {
            Some(level) => pieces.push(Piece::Heading(level, text.to_owned())),
            None => pieces.push(Piece::Block(text.to_owned())),
        }
    }
    Ok(pieces)
}

/// Where the next `<name>` or `<name …>` tag starts (not `<name…` of a longer name).
fn find_tag(xml: &str, name: &str) -> Option<usize> {
    let open = format!("<{name}");
    let mut from = 0;
    while let Some(at) = xml[from..].find(&open) {
        let at = from + at;
        match xml[at + open.len()..].chars().next() {
            Some('>' | ' ' | '/' | '\t' | '\n' | '\r') => return Some(at),
            _ => from = at + open.len(),
        }
    }
    None
}

/// `Heading1`…`Heading6` (and `Title`) as heading levels.
fn heading_level(paragraph: &str) -> Option<u8> {
    let at = paragraph.find("<w:pStyle ")?;
    let style = &paragraph[at..];
    let value = style.split("w:val=\"").nth(1)?.split('"').next()?;
    if value.eq_ignore_ascii_case("title") {
        return Some(1);
    }
    let level: u8 = value
        .strip_prefix("Heading")
        .or_else(|| value.strip_prefix("heading"))?
        .trim()
        .parse()
        .ok()?;
    (1..=6).contains(&level).then_some(level)
}

/// The text of a paragraph's runs: `<w:t>` contents, tabs and breaks.
fn paragraph_text(paragraph: &str) -> String {
    let mut text = String::new();
    let mut rest = paragraph;
    while let Some(at) = rest.find('<') {
        let tag_end = match rest[at..].find('>') {
            Some(e) => at + e + 1,
            None => break,
        };
        let tag = &rest[at..tag_end];
        rest = &rest[tag_end..];
        if tag.starts_with("<w:t>") || tag.starts_with("<w:t ") {
            let content_end = rest.find("</w:t>").unwrap_or(rest.len());
            text.push_str(&unescape(&rest[..content_end]));
            rest = &rest[content_end..];
        } else if tag.starts_with("<w:tab") && tag.ends_with("/>") {
            text.push('\t');
        } else if tag.starts_with("<w:br") {
            text.push('\n');
        }
    }
    text
}

fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(end) = after.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &after[1..];
            continue;
        };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use steward_testkit::docx::archive;

    use super::*;

    const DOCUMENT: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>
<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Returns &amp; refunds</w:t></w:r></w:p>
<w:p><w:r><w:t xml:space="preserve">Refunds take </w:t></w:r><w:r><w:rPr><w:b/></w:rPr><w:t>five</w:t></w:r><w:r><w:t xml:space="preserve"> days.</w:t></w:r></w:p>
<w:p/>
<w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Contact</w:t></w:r></w:p>
<w:p><w:r><w:t>Call</w:t><w:tab/><w:t>555&#x2011;0100</w:t><w:br/><w:t>or write.</w:t></w:r></w:p>
<w:proofErr w:type="spellStart"/><w:pict/>
</w:body></w:document>"#;

    fn limits(max_bytes: usize) -> Limits {
        Limits {
            max_bytes,
            cpu: std::time::Duration::from_secs(60),
        }
    }

    #[test]
    fn paragraphs_headings_and_runs_are_read() {
        let file = archive(&[
            ("[Content_Types].xml", b"<Types/>"),
            ("word/document.xml", DOCUMENT.as_bytes()),
        ]);
        let got = docx(&file, limits(1024 * 1024)).unwrap();
        assert_eq!(
            got.pieces,
            vec![
                Piece::Heading(1, "Returns & refunds".into()),
                Piece::Block("Refunds take five days.".into()),
                Piece::Heading(2, "Contact".into()),
                Piece::Block("Call\t555\u{2011}0100\nor write.".into()),
            ]
        );
    }

    #[test]
    fn bombs_traps_and_other_zips_fail_with_a_reason() {
        let bomb = archive(&[("word/document.xml", &vec![b' '; 5 * 1024 * 1024])]);
        assert!(bomb.len() < 64 * 1024, "it compresses well: {}", bomb.len());
        assert!(
            docx(&bomb, limits(1024 * 1024))
                .unwrap_err()
                .contains("decompresses to more than")
        );
        let other = archive(&[("photo.jpg", b"\xff\xd8")]);
        assert!(
            docx(&other, limits(1024))
                .unwrap_err()
                .contains("not a DOCX")
        );
        assert!(
            docx(b"PK\x03\x04truncated", limits(1024))
                .unwrap_err()
                .contains("not a readable zip")
        );
        let empty = archive(&[(
            "word/document.xml",
            b"<w:document><w:body><w:p/></w:body></w:document>",
        )]);
        assert!(docx(&empty, limits(1024)).unwrap_err().contains("no text"));
        assert_eq!(
            unescape("a &amp;&bogus; &#65;&#x42; & b"),
            "a &&bogus; AB & b"
        );
    }
}
