//! Text out of documents, keeping their structure: headings and the blocks of
//! text under them, in order. Everything here is synchronous and bounded by
//! `max_bytes` of extracted text and by a budget of CPU time.

use std::time::Duration;

use crate::sniff::{Format, as_text};

/// One unit of a document's structure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A heading and its level (1 outermost).
    Heading(u8, String),
    /// A paragraph, list item, table row, record…
    Block(String),
}

/// What a document holds, with the title it gives itself (an HTML `<title>`).
#[derive(Debug, Default)]
pub struct Extracted {
    pub title: Option<String>,
    pub pieces: Vec<Piece>,
}

/// What reading one document may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Extracted text, at most.
    pub max_bytes: usize,
    /// CPU time of the reading thread, at most: parsers of hostile input can
    /// be slow in ways no size limit foresees, and a slow read holds a slot
    /// of the worker that other organizations' jobs need.
    pub cpu: Duration,
}

/// The CPU time a read has left, counted on the thread that reads.
pub(crate) struct Budget {
    limit: Duration,
    started: Duration,
    calls: u32,
}

impl Budget {
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            limit,
            started: thread_cpu_time(),
            calls: 0,
        }
    }

    /// Fails once the read has used up its time; looks at the clock on every
    /// 64th call, so that a loop may call it for every step.
    pub(crate) fn spend(&mut self) -> Result<(), String> {
        self.calls = self.calls.wrapping_add(1);
        if self.calls.is_multiple_of(64) {
            self.check()
        } else {
            Ok(())
        }
    }

    /// Fails if the read has used up its time.
    pub(crate) fn check(&self) -> Result<(), String> {
        if thread_cpu_time().saturating_sub(self.started) > self.limit {
            return Err(format!(
                "reading the document took more than {:?} of CPU time",
                self.limit
            ));
        }
        Ok(())
    }
}

fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given; this clock
    // exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Collects pieces, refusing more than `max_bytes` of text or a read past
/// its CPU time.
pub(crate) struct Collector {
    pieces: Vec<Piece>,
    bytes: usize,
    max_bytes: usize,
    pub(crate) budget: Budget,
}

impl Collector {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            pieces: Vec::new(),
            bytes: 0,
            max_bytes: limits.max_bytes,
            budget: Budget::new(limits.cpu),
        }
    }

    pub(crate) fn push(&mut self, piece: Piece) -> Result<(), String> {
        self.budget.spend()?;
        let text = match &piece {
            Piece::Heading(_, t) | Piece::Block(t) => t,
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        self.bytes += text.len();
        if self.bytes > self.max_bytes {
            return Err(format!(
                "the document holds more than {} of text",
                size(self.max_bytes)
            ));
        }
        self.pieces.push(piece);
        Ok(())
    }

    pub(crate) fn into_pieces(self) -> Vec<Piece> {
        self.pieces
    }
}

/// Extracts a document's pieces. A zip is read as DOCX (see [`crate::docx`]);
/// PDF is read in a child process (see [`crate::pdf`]), never here.
pub fn extract(format: Format, bytes: &[u8], limits: Limits) -> Result<Extracted, String> {
    match format {
        Format::Pdf => return Err("a PDF is read by the PDF reader, not here".into()),
        Format::Zip => return crate::docx::docx(bytes, limits),
        _ => {}
    }
    let text = as_text(bytes).ok_or("the file is not readable text")?;
    let mut out = Collector::new(limits);
    let title = match format {
        Format::Text => {
            paragraphs(text, &mut out)?;
            None
        }
        Format::Markdown => {
            markdown(text, &mut out)?;
            None
        }
        Format::Html => html(text, &mut out)?,
        Format::Csv => {
            csv_rows(text, &mut out)?;
            None
        }
        Format::Json => {
            json(text, &mut out)?;
            None
        }
        Format::Pdf | Format::Zip => unreachable!("handled above"),
    };
    if out.pieces.is_empty() {
        return Err("the document holds no text".into());
    }
    Ok(Extracted {
        title,
        pieces: out.pieces,
    })
}

/// Blocks separated by blank lines; a block's lines joined by spaces.
pub(crate) fn paragraphs(text: &str, out: &mut Collector) -> Result<(), String> {
    let mut block = String::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            out.push(Piece::Block(std::mem::take(&mut block)))?;
        } else {
            if !block.is_empty() {
                block.push(' ');
            }
            block.push_str(line.trim());
        }
    }
    Ok(())
}

fn markdown(text: &str, out: &mut Collector) -> Result<(), String> {
    let mut block = String::new();
    let mut fenced = false;
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        i += 1;
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            block.push_str(line);
            block.push('\n');
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        let atx = (1..=6).contains(&hashes) && line[hashes..].starts_with(' ');
        // A line underlined with === or --- is a heading too (setext).
        let underline = lines.get(i).map(|l| l.trim()).filter(|l| {
            !l.is_empty()
                && !line.trim().is_empty()
                && (l.chars().all(|c| c == '=') || l.chars().all(|c| c == '-'))
        });
        if atx || underline.is_some() {
            out.push(Piece::Block(std::mem::take(&mut block)))?;
            let (level, title) = if atx {
                (
                    hashes as u8,
                    line[hashes..].trim().trim_end_matches('#').trim(),
                )
            } else {
                i += 1;
                (
                    if underline.is_some_and(|u| u.starts_with('=')) {
                        1
                    } else {
                        2
                    },
                    line.trim(),
                )
            };
            out.push(Piece::Heading(level, title.to_owned()))?;
        } else if line.trim().is_empty() {
            out.push(Piece::Block(std::mem::take(&mut block)))?;
        } else {
            if !block.is_empty() {
                block.push(if is_list_item(line) { '\n' } else { ' ' });
            }
            block.push_str(line.trim());
        }
    }
    out.push(Piece::Block(block))
}

fn is_list_item(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("- ")
        || line.starts_with("* ")
        || line.starts_with("+ ")
        || line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// HTML's text by blocks. Scripts, styles, navigation and forms are skipped;
/// when the page marks its `<main>` (or one `<article>`), only that is read.
fn html(text: &str, out: &mut Collector) -> Result<Option<String>, String> {
    use scraper::{ElementRef, Node, Selector};

    // The HTML parser slows down with the square of nesting depth: a small
    // hostile page could hold a worker for minutes.
    if nesting(text) > MAX_HTML_NESTING {
        return Err(format!(
            "the page nests its elements more than {MAX_HTML_NESTING} deep"
        ));
    }
    let page = parse_html(text, &out.budget)?;
    let title = Selector::parse("title").ok().and_then(|s| {
        page.select(&s)
            .next()
            .map(|t| collapse(&t.text().collect::<String>()))
            .filter(|t| !t.is_empty())
    });
    let main = ["main", "article"].iter().find_map(|tag| {
        let selector = Selector::parse(tag).ok()?;
        let mut found = page.select(&selector);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    });
    let root = main.unwrap_or_else(|| page.root_element());

    const SKIP: &[&str] = &[
        "script", "style", "noscript", "template", "nav", "footer", "form", "svg", "iframe",
        "head", "button", "select", "object",
    ];
    const BLOCK: &[&str] = &[
        "p",
        "div",
        "section",
        "article",
        "main",
        "li",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "pre",
        "blockquote",
        "table",
        "tr",
        "br",
        "hr",
        "header",
        "aside",
        "figure",
        "figcaption",
        "address",
        "details",
        "summary",
        "body",
    ];

    /// Deeper than this, an element's text is taken whole: hostile pages nest
    /// without end, and recursion must not overflow the stack.
    const MAX_DEPTH: usize = 100;

    fn walk(
        element: ElementRef<'_>,
        depth: usize,
        buffer: &mut String,
        out: &mut Collector,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            buffer.extend(element.text());
            buffer.push(' ');
            return Ok(());
        }
        for child in element.children() {
            out.budget.spend()?;
            match child.value() {
                Node::Text(t) => buffer.push_str(t),
                Node::Element(e) => {
                    let name = e.name();
                    if SKIP.contains(&name) {
                        continue;
                    }
                    let Some(child) = ElementRef::wrap(child) else {
                        continue;
                    };
                    if let Some(level) = name
                        .strip_prefix('h')
                        .and_then(|n| n.parse::<u8>().ok())
                        .filter(|l| (1..=6).contains(l))
                    {
                        out.push(Piece::Block(collapse(&std::mem::take(buffer))))?;
                        out.push(Piece::Heading(
                            level,
                            collapse(&child.text().collect::<String>()),
                        ))?;
                    } else if name == "td" || name == "th" {
                        walk(child, depth + 1, buffer, out)?;
                        buffer.push_str(" | ");
                    } else if BLOCK.contains(&name) {
                        out.push(Piece::Block(collapse(&std::mem::take(buffer))))?;
                        walk(child, depth + 1, buffer, out)?;
                        let block = collapse(&std::mem::take(buffer));
                        out.push(Piece::Block(block.trim_end_matches('|').trim().to_owned()))?;
                    } else {
                        walk(child, depth + 1, buffer, out)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    let mut buffer = String::new();
    walk(root, 0, &mut buffer, out)?;
    out.push(Piece::Block(collapse(&buffer)))?;
    Ok(title)
}

/// Parses a page a piece at a time, so that a parse past its budget stops.
fn parse_html(text: &str, budget: &Budget) -> Result<scraper::Html, String> {
    use html5ever::tendril::TendrilSink;

    const PIECE: usize = 64 * 1024;
    let mut parser = html5ever::driver::parse_document(
        scraper::HtmlTreeSink::new(scraper::Html::new_document()),
        Default::default(),
    );
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(PIECE);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        parser.process(rest[..end].into());
        rest = &rest[end..];
        budget.check()?;
    }
    Ok(parser.finish())
}

/// Deeper nesting than this is refused; real pages stay far below it.
const MAX_HTML_NESTING: usize = 3_000;

/// The deepest nesting of elements, counted from tags as the parser would
/// build them. Void elements, self-closing tags and elements whose end tag may
/// be left out (`<p>`, `<li>`…) are not counted, so this never overstates real
/// pages; an end tag closes its element and everything opened inside it, and an
/// end tag with no open element of its name is ignored, as the parser ignores
/// it (a stray `</x>` cannot hide nesting).
fn nesting(html: &str) -> usize {
    const UNCOUNTED: &[&str] = &[
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "thead",
        "tbody", "tfoot", "colgroup", "rp", "rt", "caption", "!doctype", "!--",
    ];
    let mut open: Vec<String> = Vec::new();
    // How many of each name are open, so that a stray end tag costs nothing.
    let mut open_by_name: std::collections::HashMap<String, usize> = Default::default();
    let mut deepest = 0usize;
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let closing = rest.starts_with('/');
        let name: String = rest
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!' || *c == '-')
            .take(16)
            .collect::<String>()
            .to_ascii_lowercase();
        if name.is_empty() || UNCOUNTED.contains(&name.as_str()) {
            continue;
        }
        let self_closing = rest.find('>').is_some_and(|end| rest[..end].ends_with('/'));
        if closing {
            if open_by_name.get(&name).is_some_and(|n| *n > 0) {
                while let Some(top) = open.pop() {
                    if let Some(n) = open_by_name.get_mut(&top) {
                        *n -= 1;
                    }
                    if top == name {
                        break;
                    }
                }
            }
        } else if !self_closing {
            *open_by_name.entry(name.clone()).or_default() += 1;
            open.push(name);
            deepest = deepest.max(open.len());
        }
    }
    deepest
}

/// A size for people: whole megabytes or kilobytes.
pub(crate) fn size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{} MB", bytes / (1024 * 1024))
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// Runs of whitespace as one space, trimmed.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Each record as "column: value; …", under the header row's names.
fn csv_rows(text: &str, out: &mut Collector) -> Result<(), String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("the CSV file is malformed: {e}"))?
        .iter()
        .map(collapse)
        .collect();
    for record in reader.records() {
        let record = record.map_err(|e| format!("the CSV file is malformed: {e}"))?;
        let fields: Vec<String> = record
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(i, v)| match headers.get(i).filter(|h| !h.is_empty()) {
                Some(h) => format!("{h}: {}", collapse(v)),
                None => collapse(v),
            })
            .collect();
        out.push(Piece::Block(fields.join("; ")))?;
    }
    Ok(())
}

/// Each element of a top-level array, or each top-level key, as one block of
/// "path: value" lines.
fn json(text: &str, out: &mut Collector) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the JSON file is malformed: {e}"))?;
    fn lines(value: &serde_json::Value, path: &str, into: &mut Vec<String>) {
        use serde_json::Value;
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    lines(value, &path, into);
                }
            }
            Value::Array(items) => {
                for (i, value) in items.iter().enumerate() {
                    lines(value, &format!("{path}[{i}]"), into);
                }
            }
            Value::Null => {}
            Value::String(s) => into.push(format!("{path}: {}", collapse(s))),
            other => into.push(format!("{path}: {other}")),
        }
    }
    let parts: Vec<(String, &serde_json::Value)> = match &value {
        serde_json::Value::Array(items) => items.iter().map(|v| (String::new(), v)).collect(),
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        other => vec![(String::new(), other)],
    };
    for (path, value) in parts {
        let mut block = Vec::new();
        lines(value, &path, &mut block);
        out.push(Piece::Block(block.join("\n")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: Limits = Limits {
        max_bytes: 1024 * 1024,
        cpu: Duration::from_secs(60),
    };

    fn blocks(pieces: &[Piece]) -> Vec<&str> {
        pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Block(t) => Some(t.as_str()),
                Piece::Heading(..) => None,
            })
            .collect()
    }

    #[test]
    fn text_is_cut_at_blank_lines() {
        let got = extract(Format::Text, b"One line\nwraps here.\n\n\nSecond.\n", MB).unwrap();
        assert_eq!(
            got.pieces,
            vec![
                Piece::Block("One line wraps here.".into()),
                Piece::Block("Second.".into())
            ]
        );
    }

    #[test]
    fn markdown_keeps_headings_lists_and_code() {
        let doc = "# Returns\n\nItems can be returned.\n\n## Refunds ##\n- within 5 days\n- to the card\n\nSetext\n======\n```\nlet x = 1;\n```\n";
        let got = extract(Format::Markdown, doc.as_bytes(), MB).unwrap();
        assert_eq!(
            got.pieces,
            vec![
                Piece::Heading(1, "Returns".into()),
                Piece::Block("Items can be returned.".into()),
                Piece::Heading(2, "Refunds".into()),
                Piece::Block("- within 5 days\n- to the card".into()),
                Piece::Heading(1, "Setext".into()),
                Piece::Block("let x = 1;\n".into()),
            ]
        );
    }

    #[test]
    fn html_reads_the_main_content_and_skips_scripts_and_navigation() {
        let page = r#"<!doctype html><html><head><title> Opening  hours </title><style>p{}</style></head>
            <body><nav><a href="/">Home</a></nav>
            <main><h1>Hours</h1><p>Open <b>nine</b> to five.</p><script>alert("x")</script>
            <table><tr><th>Day</th><th>Open</th></tr><tr><td>Sat</td><td>10-2</td></tr></table>
            <ul><li>Closed Sundays</li></ul></main><footer>© us</footer></body></html>"#;
        let got = extract(Format::Html, page.as_bytes(), MB).unwrap();
        assert_eq!(got.title.as_deref(), Some("Opening hours"));
        assert_eq!(got.pieces[0], Piece::Heading(1, "Hours".into()));
        assert_eq!(
            blocks(&got.pieces),
            vec![
                "Open nine to five.",
                "Day | Open",
                "Sat | 10-2",
                "Closed Sundays"
            ]
        );
    }

    #[test]
    fn csv_and_json_become_labelled_records() {
        let got = extract(
            Format::Csv,
            b"product,price,note\nTea,3,\nCake,4,\"with, comma\"\n",
            MB,
        )
        .unwrap();
        assert_eq!(
            blocks(&got.pieces),
            vec![
                "product: Tea; price: 3",
                "product: Cake; price: 4; note: with, comma"
            ]
        );
        let got = extract(
            Format::Json,
            br#"[{"q": "Hours?", "a": {"text": "Nine to five", "n": 2}}, {"q": "Dogs?"}]"#,
            MB,
        )
        .unwrap();
        assert_eq!(
            blocks(&got.pieces),
            vec!["a.n: 2\na.text: Nine to five\nq: Hours?", "q: Dogs?"]
        );
        assert!(
            extract(Format::Json, b"{\"a\": ", MB)
                .unwrap_err()
                .contains("malformed")
        );
    }

    #[test]
    fn too_much_text_and_empty_documents_fail_with_a_reason() {
        let big = "word ".repeat(300_000);
        assert!(
            extract(Format::Text, big.as_bytes(), MB)
                .unwrap_err()
                .contains("more than 1 MB")
        );
        assert!(
            extract(Format::Html, b"<html><script>x</script></html>", MB)
                .unwrap_err()
                .contains("no text")
        );
        assert!(extract(Format::Text, b"\0\0\0", MB).is_err());
    }

    #[test]
    fn endlessly_nested_html_is_refused_quickly() {
        let page = format!("<html><body>{}x</body></html>", "<div>".repeat(200_000));
        assert!(
            extract(Format::Html, page.as_bytes(), MB)
                .unwrap_err()
                .contains("nests")
        );
        let paragraphs = format!(
            "<html><body>{}</body></html>",
            "<p>unclosed ".repeat(10_000)
        );
        assert_eq!(
            nesting(&paragraphs),
            2,
            "html and body; paragraphs close themselves"
        );
        assert_eq!(nesting("<a><b/><br><c></c></a><!-- <x> -->"), 2);
        // Stray end tags do not close anything: the parser ignores them.
        let stray = "<div></x>".repeat(60_000);
        assert_eq!(nesting(&stray), 60_000);
        assert!(
            extract(Format::Html, stray.as_bytes(), MB)
                .unwrap_err()
                .contains("nests")
        );
        // An end tag closes what was opened inside its element.
        assert_eq!(nesting("<a><b><c></a><d></d>"), 3);
        assert_eq!(nesting(&"<span></div>".repeat(100_000)), 100_000);
    }

    #[test]
    fn endlessly_nested_html_is_read_without_overflowing_the_stack() {
        const NEST: usize = 1_400;
        let page = format!(
            "<html><body>{}deep text{}</body></html>",
            "<div><span>".repeat(NEST),
            "</span></div>".repeat(NEST)
        );
        let got = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || extract(Format::Html, page.as_bytes(), MB))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert_eq!(blocks(&got.pieces), vec!["deep text"]);
    }

    #[test]
    fn a_read_stops_when_its_cpu_time_is_spent() {
        let page = format!(
            "<html><body>{}</body></html>",
            "<div><p>Opening hours are nine to five.</p></div>".repeat(20_000)
        );
        let markdown = "# Hours\n\nNine to five.\n\n".repeat(20_000);
        let tight = Limits {
            max_bytes: 10 * 1024 * 1024,
            cpu: Duration::from_millis(1),
        };
        let ample = Limits {
            cpu: Duration::from_secs(60),
            ..tight
        };
        for (format, text) in [(Format::Html, &page), (Format::Markdown, &markdown)] {
            assert!(extract(format, text.as_bytes(), ample).is_ok());
            let error = extract(format, text.as_bytes(), tight).unwrap_err();
            assert!(error.contains("CPU time"), "{format:?}: {error}");
        }
    }
}
